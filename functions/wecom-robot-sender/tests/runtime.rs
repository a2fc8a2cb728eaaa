//! This binary, run as Lambda runs it, against DynamoDB Local and the fake WeCom robot.
use hookbridge::event::Status;
use hookbridge_tests::fake_wecom_robot::FakeWeComRobot;
use hookbridge_tests::{config, dynamo_store, ingest, lambda_env, run_stream, statuses};

#[tokio::test]
async fn posts_its_own_deliveries_and_leaves_the_others() {
    let fake = FakeWeComRobot::start().await;
    let robot = format!(
        "[connectors.wecom_robot.ops]\nwebhook = \"plain:{}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"wecom_robot\"\n",
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
        ("INSERT", pk, "DLV#wecom_robot#000"),
    ];
    let env = lambda_env(&table, None, &robot);
    let logs = run_stream(
        env!("CARGO_BIN_EXE_wecom-robot-sender"),
        &env,
        &table,
        &items,
    )
    .await;
    assert_eq!(fake.posted().len(), 1, "posted: {logs}");
    assert_eq!(fake.posted()[0]["msgtype"], "markdown");
    assert_eq!(
        statuses(&store, pk).await,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("wecom_robot".to_owned(), Status::Sent)
        ]
    );
}
