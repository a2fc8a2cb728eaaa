//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge::store::DeliveryStore;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{HAP_TOKEN, dynamo_store, events, fixture, lambda_env};

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
}

#[tokio::test]
async fn exits_with_a_clear_error_when_the_config_is_missing() {
    let payload = events::apigw_v2("/hap/message", "{}", None, false);
    let (answer, logs) = invoke(env!("CARGO_BIN_EXE_hap-webhook"), &[], payload).await;
    assert!(
        matches!(answer, Answer::Exited(Some(c)) if c != 0),
        "{answer:?}"
    );
    assert!(logs.contains("HOOKBRIDGE_CONFIG is not set"), "{logs}");
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
}
