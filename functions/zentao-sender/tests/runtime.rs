//! This binary, run as Lambda runs it, against DynamoDB Local and the fake ZenTao.
use hookbridge::event::Status;
use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, KEY};
use hookbridge_tests::{config, dynamo_store, ingest, lambda_env, run_stream, statuses};

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
    ingest(
        &store,
        config(None, &zentao),
        "/hap/message",
        "hap-message-mention.json",
    )
    .await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    // A filter gone wrong: the DingTalk delivery reaches the ZenTao sender too.
    let items = [
        ("INSERT", pk, "DLV#dingtalk#000"),
        ("INSERT", pk, "DLV#zentao#000"),
    ];
    let env = lambda_env(&table, None, &zentao);
    run_stream(env!("CARGO_BIN_EXE_zentao-sender"), &env, &table, &items).await;
    assert_eq!(fake.calls("sendNotification").len(), 1);
    assert_eq!(
        statuses(&store, pk).await,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("zentao".to_owned(), Status::Sent)
        ]
    );
}
