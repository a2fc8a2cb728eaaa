//! This binary, run as Lambda runs it, against DynamoDB Local and the fake WeCom robot.
use hookbridge::event::Status;
use hookbridge_tests::fake_wecom_robot::FakeWeComRobot;
use hookbridge_tests::sender_takes_its_own;

#[tokio::test]
async fn posts_its_own_deliveries_once_and_leaves_the_others() {
    let fake = FakeWeComRobot::start().await;
    let robot = format!(
        "[connectors.wecom_robot.ops]\nwebhook = \"plain:{}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"wecom_robot\"\n",
        fake.webhook()
    );
    let (logs, statuses) = sender_takes_its_own(
        env!("CARGO_BIN_EXE_wecom-robot-sender"),
        &robot,
        "wecom_robot",
    )
    .await;
    assert_eq!(fake.posted().len(), 1, "posted once: {logs}");
    assert_eq!(fake.posted()[0]["msgtype"], "markdown");
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("wecom_robot".to_owned(), Status::Sent)
        ]
    );
}
