//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge::store::{DeliveryStore, HistoryStore};
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{HAP_TOKEN, dynamo_store, emf, events, fixture, lambda_env};
use serde_json::json;

#[tokio::test]
async fn answers_an_api_gateway_request_and_stores_the_event() {
    let store = dynamo_store().await;
    let payload = events::apigw_v2(
        "/hap/message",
        &fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
        false,
    );
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_hap-webhook"),
        &lambda_env(store.table(), None, ""),
        payload,
    )
    .await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(r["statusCode"], 200, "{r}");
    let body: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["deliveries"], 2, "{body}");
    assert_eq!(
        store
            .deliveries_of("EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d")
            .await
            .unwrap()
            .len(),
        2
    );
    let accepted = ("Source".to_owned(), "hap".to_owned());
    assert_eq!(
        emf(&logs, "Accepted"),
        [(json!(1.0), vec![accepted])],
        "{logs}"
    );
}

#[tokio::test]
async fn exits_with_a_clear_error_when_the_config_is_missing() {
    let payload = events::apigw_v2("/hap/message", "{}", None, false);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_hap-webhook"), &[], payload).await;
    assert!(
        matches!(answer, Answer::Exited(Some(c)) if c != 0),
        "{answer:?}"
    );
    assert!(
        logs.contains("no config: set HOOKBRIDGE_CONFIG_FILE"),
        "{logs}"
    );
}

/// API Gateway joins a header sent twice with a comma; that joined value is refused.
#[tokio::test]
async fn a_token_header_sent_twice_is_refused() {
    let store = dynamo_store().await;
    let joined = format!("{HAP_TOKEN},{HAP_TOKEN}x");
    let payload = events::apigw_v2(
        "/hap/message",
        &fixture("hap-message-todo.json"),
        Some(&joined),
        false,
    );
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_hap-webhook"),
        &lambda_env(store.table(), None, ""),
        payload,
    )
    .await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(r["statusCode"], 401, "{r}");
    assert!(store.recent(10).await.unwrap().is_empty());
    let why = vec![
        ("Source".to_owned(), "hap".to_owned()),
        ("Reason".to_owned(), "unauthorized".to_owned()),
    ];
    assert_eq!(emf(&logs, "Rejected"), [(json!(1.0), why)], "{logs}");
    assert!(emf(&logs, "Accepted").is_empty(), "{logs}");
}

/// On Lambda (LogFormat JSON) every log line is one JSON object, whatever a request carries.
#[tokio::test]
async fn json_logs_stay_one_object_a_line_with_hostile_values() {
    let store = dynamo_store().await;
    let body = serde_json::json!({
        "messageId": "x\n{\"level\":\"ERROR\",\"forged\":true}\u{0}",
        "message": "m",
        "targets": ["u\r\nINFO forged"],
    });
    let payload = events::apigw_v2("/hap/message", &body.to_string(), Some(HAP_TOKEN), false);
    let mut env = lambda_env(store.table(), None, "");
    env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON".into()));
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_hap-webhook"), &env, payload).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(r["statusCode"], 200, "{r}");
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("forged").is_none(), "{line}");
    }
}

/// The stack's config, as shipped, with a recipient map of 5,000 users: loaded the way the
/// deployed function loads it (a file named by HOOKBRIDGE_CONFIG_FILE, the secret it references
/// from Secrets Manager), and the last user of the map gets their mapped id.
#[tokio::test]
async fn loads_the_stack_config_with_5000_users_from_its_file() {
    let stack = include_str!("../../../config/stack/hookbridge.toml");
    let header = "[recipients.dingtalk.map]\n";
    let mut users = String::from(header);
    for i in 0..5_000 {
        users.push_str(&format!("\"hap-{i:04}\" = \"dingtalk-{i:04}\"\n"));
    }
    let text = stack.replacen(header, &users, 1);
    assert!(
        text.len() > 100_000,
        "a map of 5,000 users is {} bytes",
        text.len()
    );
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hookbridge-5000.toml");
    std::fs::write(&file, &text).unwrap();

    let secrets = hookbridge_tests::fake_secrets::FakeSecrets::start(&[(
        "hookbridge/secrets",
        &format!(r#"{{"hap_token":"{HAP_TOKEN}","dingtalk_app_secret":"x"}}"#),
    )])
    .await;
    let store = dynamo_store().await;
    let mut env = lambda_env(store.table(), None, "");
    env.retain(|(k, _)| *k != "HOOKBRIDGE_CONFIG");
    env.push(("HOOKBRIDGE_CONFIG_FILE", file.display().to_string()));
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER", secrets.url.clone()));
    let body = json!({
        "messageId": "five-thousand",
        "message": "【采购管理】请审批",
        "targets": ["hap-4999", "hap-0000", "not-in-the-map"],
    });
    let payload = events::apigw_v2("/hap/message", &body.to_string(), Some(HAP_TOKEN), false);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_hap-webhook"), &env, payload).await;
    let Answer::Response(r) = answer else {
        panic!("{answer:?}\n{logs}")
    };
    assert_eq!(r["statusCode"], 200, "{r}\n{logs}");
    assert_eq!(*secrets.requested.lock().unwrap(), ["hookbridge/secrets"]);
    let deliveries = store.deliveries_of("EVT#hap#five-thousand").await.unwrap();
    let recipients: Vec<&str> = deliveries
        .iter()
        .flat_map(|d| d.recipients.iter().map(String::as_str))
        .collect();
    // Passthrough: an id the map does not name goes as it is.
    assert_eq!(
        recipients,
        ["dingtalk-4999", "dingtalk-0000", "not-in-the-map"],
        "{deliveries:?}"
    );
}
