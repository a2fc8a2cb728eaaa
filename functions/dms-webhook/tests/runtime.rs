//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge::store::DeliveryStore;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{HAP_TOKEN, dynamo_store, events, fixture, lambda_env};
use serde_json::{Value, json};

const DMS: &str = r#"
[sources.dms]
signature_key = "plain:dms-secret"

[[routes]]
source = "dms"
connector = "dingtalk"

[recipients.dingtalk.map]
"1673826650168842" = "lisi"
"#;

#[tokio::test]
async fn answers_dms_in_its_format_and_serves_only_dms() {
    let store = dynamo_store().await;
    let env = lambda_env(store.table(), None, DMS);
    let signed = events::apigw_v2("/dms", &fixture("dms-approval-pending.json"), None, false);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_dms-webhook"), &env, signed).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(r["statusCode"], 200, "{r}\n{logs}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"root": "", "success": true}));
    assert!(logs.contains("DMS signature verified"), "{logs}");
    let stored = store.recent(10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].recipients, ["lisi"]);

    // The HAP webhook is another function: this one does not serve it.
    let hap = events::apigw_v2(
        "/hap/message",
        &fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
        false,
    );
    let (answer, _) = invoke(env!("CARGO_BIN_EXE_dms-webhook"), &env, hap).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(r["statusCode"], 404);
}

#[tokio::test]
async fn log_mode_accepts_a_mismatch_and_says_so() {
    let store = dynamo_store().await;
    let log_mode = DMS.replace(
        "signature_key = \"plain:dms-secret\"",
        "signature_key = \"plain:dms-secret\"\nsignature_mode = \"log\"",
    );
    let env = lambda_env(store.table(), None, &log_mode);
    let vendor = events::apigw_v2("/dms", &fixture("dms-test-message.json"), None, false);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_dms-webhook"), &env, vendor).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(r["statusCode"], 200, "{r}\n{logs}");
    assert!(logs.contains("DMS signature check failed"), "{logs}");
    assert!(
        logs.contains("hookbridge dms verify"),
        "the log says what to do: {logs}"
    );
}

/// Every forgery is refused with 401 through the function's real entry point and nothing is
/// stored (so nothing can be delivered); in log mode each is logged as a failed check.
#[tokio::test]
async fn forged_requests_are_refused_and_stored_nowhere() {
    use hookbridge_tests::forgeries;

    let store = dynamo_store().await;
    let enforce = lambda_env(store.table(), None, DMS);
    let log_store = dynamo_store().await;
    let log_mode = lambda_env(
        log_store.table(),
        None,
        &DMS.replace(
            "signature_key = \"plain:dms-secret\"",
            "signature_key = \"plain:dms-secret\"\nsignature_mode = \"log\"",
        ),
    );
    for (name, body) in forgeries::forgeries() {
        let request = events::apigw_v2("/dms", &body, None, false);
        let (answer, logs) =
            invoke(env!("CARGO_BIN_EXE_dms-webhook"), &enforce, request.clone()).await;
        let Answer::Response(r) = answer else {
            panic!("{name}: {answer:?}\n{logs}")
        };
        assert_eq!(r["statusCode"], 401, "{name}: {r}\n{logs}");
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["success"], false, "{name}");
        assert!(
            logs.contains("DMS signature check failed"),
            "{name}: {logs}"
        );
        assert!(store.recent(10).await.unwrap().is_empty(), "{name}: stored");

        let (_, logs) = invoke(env!("CARGO_BIN_EXE_dms-webhook"), &log_mode, request).await;
        assert!(
            logs.contains("DMS signature check failed"),
            "log mode, {name}: {logs}"
        );
    }
}
