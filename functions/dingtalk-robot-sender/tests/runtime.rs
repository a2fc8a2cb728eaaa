//! This binary, run as Lambda runs it, against DynamoDB Local and the fake robot.
use hookbridge::event::Status;
use hookbridge_tests::fake_robot::{FakeRobot, SECRET};
use hookbridge_tests::sender_takes_its_own;

#[tokio::test]
async fn posts_its_own_deliveries_signed_once_and_leaves_the_others() {
    let fake = FakeRobot::start(true, None).await;
    let robot = format!(
        "[connectors.dingtalk_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"dingtalk_robot\"\n",
        fake.webhook()
    );
    let binary = env!("CARGO_BIN_EXE_dingtalk-robot-sender");
    let (logs, statuses) = sender_takes_its_own(binary, &robot, "dingtalk_robot").await;
    assert_eq!(
        fake.calls().len(),
        1,
        "signed, accepted and posted once: {logs}"
    );
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("dingtalk_robot".to_owned(), Status::Sent)
        ]
    );
}
