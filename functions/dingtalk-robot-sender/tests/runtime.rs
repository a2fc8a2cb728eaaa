//! This binary, run as Lambda runs it, against DynamoDB Local and the fake robot.
use hookbridge::event::Status;
use hookbridge_tests::fake_robot::{FakeRobot, SECRET};
use hookbridge_tests::{config, dynamo_store, ingest, lambda_env, run_stream, statuses};

#[tokio::test]
async fn posts_its_own_deliveries_signed_and_leaves_the_others() {
    let fake = FakeRobot::start(true, None).await;
    let robot = format!(
        "[connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n",
        fake.webhook()
    );
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    ingest(
        &store,
        config(None, &robot),
        "/hap/message",
        "hap-message-mention.json",
    )
    .await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    let items = [
        ("INSERT", pk, "DLV#dingtalk#000"),
        ("INSERT", pk, "DLV#dingtalk_robot#000"),
    ];
    let env = lambda_env(&table, None, &robot);
    let logs = run_stream(
        env!("CARGO_BIN_EXE_dingtalk-robot-sender"),
        &env,
        &table,
        &items,
    )
    .await;
    assert_eq!(fake.posted().len(), 1, "signed and accepted: {logs}");
    assert_eq!(
        statuses(&store, pk).await,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("dingtalk_robot".to_owned(), Status::Sent)
        ]
    );
}
