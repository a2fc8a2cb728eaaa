//! This binary, run as Lambda runs it, against DynamoDB Local and the fake 浙政钉 gateway.
use std::sync::Arc;

use hookbridge::event::Status;
use hookbridge::store::HistoryStore;
use hookbridge_tests::fake_govding::{APP_SECRET, FakeGovDing, hap_route};
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{
    HAP_TOKEN, app_on, config, dynamo_store, events, fixture, lambda_env, request,
};

#[tokio::test]
async fn sends_its_own_deliveries_and_leaves_the_others() {
    let fake = FakeGovDing::start().await;
    let govding = format!(
        "{}\n[recipients.govding.map]\nwangwu_2231 = \"10001\"\n",
        hap_route(&fake.url, APP_SECRET)
    );
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, &govding), Arc::new(store.clone())).await;
    let req = request(
        "/hap/message",
        fixture("hap-message-mention.json"),
        Some(HAP_TOKEN),
    );
    let answer = ingress
        .ingress
        .handle(req, hookbridge::event::now_ms())
        .await;
    assert_eq!(answer.status, 200);
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    // A filter gone wrong: the DingTalk delivery reaches this sender too, and twice its own.
    let batch = events::stream_batch(
        &table,
        &[
            ("INSERT", pk, "DLV#dingtalk#000"),
            ("INSERT", pk, "DLV#govding#000"),
            ("MODIFY", pk, "DLV#govding#000"),
        ],
    )
    .await;
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_govding-sender"),
        &lambda_env(&table, None, &govding),
        batch,
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({"batchItemFailures": []})),
        "{logs}"
    );
    assert_eq!(fake.calls().len(), 1, "sent once");
    let statuses: Vec<(String, Status)> = store
        .deliveries_of(pk)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.connector, d.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("govding".to_owned(), Status::Sent)
        ]
    );
}
