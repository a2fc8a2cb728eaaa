//! The stack's static egress (`EgressMode` in template.yaml) follows the connectors: the sender
//! function of every connector whose system whitelists callers' addresses runs behind it, and
//! no other function does. scripts/validate-template.py checks the same template mode by mode
//! after the SAM transform.

use hookbridge::registry::CONNECTORS;

/// Each resource of template.yaml's `Resources` as (logical id, its lines).
fn resources() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let body = &text[text.find("\nResources:\n").expect("Resources")..];
    let body = &body[..body.find("\nOutputs:\n").unwrap_or(body.len())];
    let mut out: Vec<(String, String)> = vec![];
    for line in body.lines().skip(2) {
        let top = line.starts_with("  ") && !line.starts_with("   ") && line.ends_with(':');
        if top && !line.trim_start().starts_with('#') {
            out.push((line.trim().trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push_str(line);
            lines.push('\n');
        }
    }
    out
}

fn function_of(binary: &str) -> (String, String) {
    resources()
        .into_iter()
        .find(|(_, lines)| lines.contains(&format!("Binary: {binary}\n")))
        .unwrap_or_else(|| panic!("template.yaml has no function building {binary}"))
}

fn behind_egress(lines: &str) -> bool {
    lines.contains("VpcConfig: !If\n        - EgressOn\n")
}

#[test]
fn senders_of_whitelisting_systems_run_behind_the_static_egress() {
    assert!(!CONNECTORS.is_empty());
    for (connector, allowlist) in CONNECTORS {
        let binary = format!("{}-sender", connector.replace('_', "-"));
        let (name, lines) = function_of(&binary);
        assert_eq!(
            behind_egress(&lines),
            *allowlist,
            "{name} ({connector}): its system {} callers' addresses",
            if *allowlist {
                "whitelists"
            } else {
                "does not whitelist"
            }
        );
    }
}

#[test]
fn no_other_function_runs_in_a_vpc() {
    let senders: Vec<String> = CONNECTORS
        .iter()
        .map(|(c, _)| format!("Binary: {}-sender\n", c.replace('_', "-")))
        .collect();
    let functions: Vec<(String, String)> = resources()
        .into_iter()
        .filter(|(_, lines)| lines.contains("Type: AWS::Serverless::Function"))
        .collect();
    assert!(functions.len() > senders.len(), "webhooks and the sweeper");
    for (name, lines) in functions {
        if !senders.iter().any(|s| lines.contains(s.as_str())) {
            assert!(!lines.contains("VpcConfig"), "{name} must not run in a VPC");
        }
    }
}

/// `hookbridge check --online --from-stack` finds each connector's sender in the stack output
/// `SenderFunctions`: every connector is there, with the function that builds its binary.
#[test]
fn the_stack_names_every_connectors_sender() {
    let named = hookbridge_tests::fake_cloudformation::sender_functions();
    for (connector, _) in CONNECTORS {
        let (function, _) = function_of(&format!("{}-sender", connector.replace('_', "-")));
        assert!(
            named
                .split_whitespace()
                .any(|p| p == format!("{connector}=hookbridge-{function}")),
            "{connector} → {function} missing from {named}"
        );
    }
}
