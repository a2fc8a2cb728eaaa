//! `hookbridge setup`: what to paste into each source, from a stack whose outputs are the ones
//! template.yaml declares (a fake CloudFormation), or from a base URL.

use hookbridge_tests::fake_cloudformation::{self, API_URL, STACK};
use hookbridge_tests::fake_secrets::FakeSecrets;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

mod common;

/// `hookbridge setup ARGS` against the fake AWS endpoints: (success, stdout, stderr).
fn setup(args: &[&str], endpoints: &[(&str, &str)]) -> (bool, String, String) {
    let mut argv = vec!["setup"];
    argv.extend(args);
    let out = common::aws_command(&argv, endpoints);
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The JSON document in a printer's output.
fn json_in(text: &str) -> serde_json::Value {
    let (start, end) = (text.find('{').unwrap(), text.rfind('}').unwrap());
    serde_json::from_str(&text[start..=end]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn hap_gets_its_appextensions_json_from_the_stack_outputs() {
    let cfn = fake_cloudformation::start(false).await;
    let endpoint = [("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn.as_str())];
    let (ok, out, err) = setup(&["hap", "--stack", STACK], &endpoint);
    assert!(ok, "{err}");
    assert!(out.contains("appextensions.json"), "{out}");
    assert!(
        out.contains("dashboard value-of-DashboardUrl")
            && out.contains(&format!("hookbridge console --stack {STACK}")),
        "setup points at the dashboard and the console: {out}"
    );
    assert_eq!(
        json_in(&out),
        serde_json::json!({
            "WebhookUrl": format!("{API_URL}/hap/message"),
            "FinishTodoWebhookUrl": format!("{API_URL}/hap/todo"),
            "WebhookHeaders": {
                "X-Hookbridge-Token": "<the value of secretsmanager:hookbridge/secrets#hap_token>"
            },
        })
    );

    // --reveal fills in the token from Secrets Manager.
    let secrets = FakeSecrets::start(&[(
        "hookbridge/secrets",
        r#"{"hap_token":"s3cret-hap-token","dingtalk_app_secret":"x"}"#,
    )])
    .await;
    let both = [
        endpoint[0],
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.url.as_str()),
    ];
    let (ok, out, err) = setup(&["hap", "--stack", STACK, "--reveal"], &both);
    assert!(ok, "{err}");
    assert_eq!(
        json_in(&out)["WebhookHeaders"]["X-Hookbridge-Token"],
        "s3cret-hap-token"
    );

    // A stack that is not there is said so, with CloudFormation's words.
    let (ok, _, err) = setup(&["hap", "--stack", "nope"], &endpoint);
    assert!(!ok);
    assert!(
        err.contains("stack nope") && err.contains("does not exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn govding_gets_the_static_ip_callback_and_the_register_command() {
    let example = format!("{REPO}/config/example.toml");
    let cfn = fake_cloudformation::start(true).await;
    let endpoint = [("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn.as_str())];
    let (ok, out, err) = setup(
        &["govding", "--stack", STACK, "--config", &example],
        &endpoint,
    );
    assert!(ok, "{err}");
    for line in [
        "  http://203.0.113.10/govding/hookbridge-demo-govding-token",
        "  http://203.0.113.11/govding/hookbridge-demo-govding-token",
    ] {
        assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
    }
    let register = format!(
        "hookbridge govding --config {example} register --callback-base http://203.0.113.10"
    );
    assert!(out.lines().any(|l| l.trim() == register), "{out}");

    // Without the front there is no IP address to register: said, with what to do.
    let cfn = fake_cloudformation::start(false).await;
    let endpoint = [("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn.as_str())];
    let (ok, _, err) = setup(
        &["govding", "--stack", STACK, "--config", &example],
        &endpoint,
    );
    assert!(!ok);
    assert!(err.contains("GovDingFrontVpcId"), "{err}");
}

#[test]
fn dms_gets_its_webhook_and_signature_settings_from_a_url() {
    let (ok, out, err) = setup(&["dms", "--url", "https://hooks.example.com/"], &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("  Webhook   https://hooks.example.com/dms\n"),
        "{out}"
    );
    assert!(out.contains("签名方式  NONE"), "{out}");

    let signed = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dms-signed.toml");
    std::fs::write(
        &signed,
        "[sources.dms]\nsignature_key = \"secretsmanager:hookbridge/dms-signature-key\"\n\
         webhook_url = \"https://old.example.com/dms\"\n",
    )
    .unwrap();
    let config = signed.display().to_string();
    let (ok, out, err) = setup(
        &[
            "dms",
            "--url",
            "https://hooks.example.com",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(out.contains("签名方式  HMAC_SHA1"), "{out}");
    assert!(
        out.contains("签名密钥  <the value of secretsmanager:hookbridge/dms-signature-key>"),
        "{out}"
    );
    // The URL the config names is not the one DMS will call: said, with the fix.
    assert!(
        out.contains("webhook_url = \"https://hooks.example.com/dms\""),
        "{out}"
    );
}

/// The systems that whitelist callers get the address the senders call from: the stack's own
/// NAT's Elastic IP, or what to do when there is none.
#[tokio::test(flavor = "multi_thread")]
async fn whitelisting_systems_get_the_senders_egress_address() {
    use fake_cloudformation::EGRESS_IP;
    let example = format!("{REPO}/config/example.toml");
    for mode in ["nat-gateway", "nat-instance"] {
        let cfn = fake_cloudformation::start_with(true, mode).await;
        let endpoint = [("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn.as_str())];
        for (system, place) in [
            ("dingtalk", "服务器出口IP"),
            ("govding", "IP 白名单"),
            ("zentao", "二次开发 → 应用"),
            ("dingtalk_robot", "IP地址（段）"),
        ] {
            let (ok, out, err) =
                setup(&[system, "--stack", STACK, "--config", &example], &endpoint);
            assert!(ok, "{system}: {err}");
            assert!(
                out.lines().any(|l| l == format!("  {EGRESS_IP}")) && out.contains(place),
                "{mode} {system}:\n{out}"
            );
        }
    }
    // No static egress: nothing to list, and how to get an address.
    let cfn = fake_cloudformation::start_with(false, "off").await;
    let endpoint = [("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn.as_str())];
    let (ok, out, err) = setup(&["dingtalk", "--stack", STACK], &endpoint);
    assert!(ok, "{err}");
    assert!(
        out.contains("no static egress") && out.contains("EgressMode nat-instance"),
        "{out}"
    );
    assert!(!out.contains(EGRESS_IP));
    // The operator's own VPC: their NAT's address.
    let cfn = fake_cloudformation::start_with(false, "existing").await;
    let endpoint = [("AWS_ENDPOINT_URL_CLOUDFORMATION", cfn.as_str())];
    let (ok, out, _) = setup(&["zentao", "--stack", STACK], &endpoint);
    assert!(ok && out.contains("EgressSubnetIds"), "{out}");
    // serve: its host's address.
    let (ok, out, _) = setup(&["dingtalk", "--url", "http://127.0.0.1:8080"], &[]);
    assert!(ok && out.contains("hookbridge serve"), "{out}");
}
