//! This binary, run as Lambda runs it, against DynamoDB Local and the fake DingTalk.
use std::sync::Arc;

use hookbridge::store::DeliveryStore;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{
    HAP_TOKEN, app_on, config, dynamo_store, events, fixture, lambda_env, request,
};

#[tokio::test]
async fn sends_the_pending_deliveries_of_a_stream_batch() {
    let fake = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, ""), Arc::new(store.clone())).await;
    let req = request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    assert_eq!(
        ingress
            .ingress
            .handle(req, hookbridge::event::now_ms())
            .await
            .status,
        200
    );
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let batch = events::stream_batch(
        &table,
        &[
            ("INSERT", pk, "DLV#dingtalk#000"),
            ("INSERT", pk, "DLV#dingtalk#001"),
        ],
    )
    .await;
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_dingtalk-sender"),
        &lambda_env(&table, Some(&fake.url)),
        batch,
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({"batchItemFailures": []})),
        "{logs}"
    );
    assert_eq!(fake.count("asyncsend_v2"), 2);
    let sent = store.deliveries_of(pk).await.unwrap();
    assert!(
        sent.iter()
            .all(|d| d.status == hookbridge::event::Status::Sent),
        "{sent:?}"
    );
}
