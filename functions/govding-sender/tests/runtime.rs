//! This binary, run as Lambda runs it, against DynamoDB Local and the fake 浙政钉 gateway.
use hookbridge::event::Status;
use hookbridge_tests::fake_govding::{APP_SECRET, FakeGovDing, hap_route};
use hookbridge_tests::{config, dynamo_store, ingest, lambda_env, run_stream, statuses};

#[tokio::test]
async fn sends_its_own_deliveries_and_leaves_the_others() {
    let fake = FakeGovDing::start().await;
    let govding = format!(
        "{}\n[recipients.govding.map]\nwangwu_2231 = \"10001\"\n",
        hap_route(&fake.url, APP_SECRET)
    );
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    ingest(
        &store,
        config(None, &govding),
        "/hap/message",
        "hap-message-mention.json",
    )
    .await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    // A filter gone wrong: the DingTalk delivery reaches this sender too, and twice its own.
    let items = [
        ("INSERT", pk, "DLV#dingtalk#000"),
        ("INSERT", pk, "DLV#govding#000"),
        ("MODIFY", pk, "DLV#govding#000"),
    ];
    let env = lambda_env(&table, None, &govding);
    run_stream(env!("CARGO_BIN_EXE_govding-sender"), &env, &table, &items).await;
    assert_eq!(fake.calls().len(), 1, "sent once");
    assert_eq!(
        statuses(&store, pk).await,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("govding".to_owned(), Status::Sent)
        ]
    );
}
