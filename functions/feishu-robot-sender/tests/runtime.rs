//! This binary, run as Lambda runs it, against DynamoDB Local and the fake Feishu bot.
use hookbridge::event::Status;
use hookbridge_tests::fake_feishu_robot::{FakeFeishuRobot, SECRET};
use hookbridge_tests::sender_takes_its_own;

#[tokio::test]
async fn posts_its_own_deliveries_signed_once_and_leaves_the_others() {
    let fake = FakeFeishuRobot::start(true, None).await;
    let bot = format!(
        "[connectors.feishu_robot.ops]\nwebhook = \"plain:{}\"\nsecret = \"plain:{SECRET}\"\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"feishu_robot\"\n",
        fake.webhook()
    );
    let binary = env!("CARGO_BIN_EXE_feishu-robot-sender");
    let (logs, statuses) = sender_takes_its_own(binary, &bot, "feishu_robot").await;
    assert_eq!(
        fake.posted().len(),
        1,
        "signed, accepted and posted once: {logs}"
    );
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("feishu_robot".to_owned(), Status::Sent)
        ]
    );
}
