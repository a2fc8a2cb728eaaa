//! This binary, run as Lambda runs it, against DynamoDB Local and the fake ZenTao.
use std::sync::Arc;

use hookbridge::event::Status;
use hookbridge::store::HistoryStore;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, KEY};
use hookbridge_tests::{
    HAP_TOKEN, app_on, config, dynamo_store, events, fixture, lambda_env, request,
};

#[tokio::test]
async fn sends_its_own_deliveries_and_leaves_the_others() {
    let fake = FakeZenTao::start().await;
    let zentao = format!(
        "[connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"zentao\"\n",
        fake.url
    );
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let ingress = app_on(config(None, &zentao), Arc::new(store.clone())).await;
    let req = request(
        "/hap/message",
        fixture("hap-message-mention.json"),
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
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    // A filter gone wrong: the DingTalk delivery reaches the ZenTao sender too.
    let batch = events::stream_batch(
        &table,
        &[
            ("INSERT", pk, "DLV#dingtalk#000"),
            ("INSERT", pk, "DLV#zentao#000"),
        ],
    )
    .await;
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_zentao-sender"),
        &lambda_env(&table, None, &zentao),
        batch,
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(serde_json::json!({"batchItemFailures": []})),
        "{logs}"
    );
    assert_eq!(fake.calls("sendNotification").len(), 1);
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
            ("zentao".to_owned(), Status::Sent)
        ]
    );
}
