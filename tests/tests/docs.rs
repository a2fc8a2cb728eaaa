//! The docs and comments cite only what a clone has: every repository path they name exists,
//! and none points at material outside the repository.

use std::path::Path;
use std::process::Command;

const TOP: &[&str] = &[
    "shared/",
    "tests/",
    "cli/",
    "functions/",
    "scripts/",
    "config/",
    "fuzz/",
    ".ci/",
];

/// The repository paths named in `text`: words starting with a top-level folder.
fn cited(text: &str) -> Vec<String> {
    let mut found = vec![];
    for (i, _) in text.char_indices() {
        let rest = &text[i..];
        let boundary = text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || "_-./".contains(c)));
        if !boundary || !TOP.iter().any(|t| rest.starts_with(t)) {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "_-./*<>{}…".contains(*c))
            .collect();
        found.push(path.trim_end_matches(['.', ',']).to_owned());
    }
    found
}

#[test]
fn every_path_the_docs_and_comments_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("git")
        .args(["ls-files"])
        .current_dir(root)
        .output()
        .expect("git runs");
    let files = String::from_utf8(out.stdout).unwrap();
    // What builds and runs make (fuzz/corpus, target…) is named but never committed.
    let ignored: Vec<String> = std::fs::read_to_string(root.join(".gitignore"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .map(str::to_owned)
        .collect();
    let mut missing = vec![];
    let mut checked = 0;
    for file in files.lines() {
        let text_file = [".rs", ".md", ".toml", ".yaml", ".py"]
            .iter()
            .any(|e| file.ends_with(e))
            || file.starts_with("scripts/")
            || file == ".ci/run";
        if !text_file || file.starts_with("tests/fixtures/") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for needle in ["DESIGN.md", "../shared/", "protocols/"] {
            if text.contains(needle) && file != "tests/tests/docs.rs" {
                missing.push(format!(
                    "{file} cites {needle}, which is not in the repository"
                ));
            }
        }
        for path in cited(&text) {
            // Patterns (functions/*/…, <name>) and folders named in passing are not files.
            if path.contains(['*', '<', '{', '…'])
                || path.ends_with('/') && path.matches('/').count() == 1
            {
                continue;
            }
            checked += 1;
            if !root.join(&path).exists() && !ignored.iter().any(|i| path.starts_with(i.as_str())) {
                missing.push(format!("{file} names {path}"));
            }
        }
    }
    assert!(checked > 50, "only {checked} paths found");
    assert!(missing.is_empty(), "{missing:#?}");
}

/// The docs name the 浙政钉 gateway's calls as the connector makes them: every gateway path
/// they cite is one the connector calls, and the recall they describe is its own (they once
/// named `revokeMessage`, a call the gateway does not have).
#[test]
fn the_gateway_calls_the_docs_name_are_the_connectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let api = std::fs::read_to_string(root.join("shared/src/connectors/govding/api.rs")).unwrap();
    let mut docs = String::new();
    for dir in ["docs", "docs/connectors", "docs/sources"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                docs += &std::fs::read_to_string(path).unwrap();
            }
        }
    }
    let gateway = ["/message/", "/mozi/", "/openplatform/", "/gettoken.json"];
    let named: Vec<&str> = docs
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| gateway.iter().any(|g| w.starts_with(g)))
        .collect();
    assert!(!named.is_empty());
    for path in named {
        assert!(
            api.contains(&format!("\"{path}\"")),
            "the docs name {path}, which the connector does not call"
        );
    }
    let serve = std::fs::read_to_string(root.join("docs/serve.md")).unwrap();
    let revoke = hookbridge::connectors::govding::REVOKE_PATH;
    assert!(
        serve.contains(&format!("`{revoke}`")),
        "docs/serve.md's recall names {revoke}"
    );
    assert!(!docs.contains("revokeMessage"));
}
