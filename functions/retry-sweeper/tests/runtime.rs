//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{dynamo_store, events, lambda_env};

#[tokio::test]
async fn sweeps_on_a_schedule_event() {
    let store = dynamo_store().await;
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_retry-sweeper"),
        &lambda_env(store.table(), None, ""),
        events::schedule(),
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({"requeued": 0})),
        "{logs}"
    );
}
