//! This binary, run as Lambda runs it, against DynamoDB Local and the fake Feishu.
use hookbridge::event::Status;
use hookbridge_tests::fake_feishu::{FakeFeishu, hap_route};
use hookbridge_tests::sender_takes_its_own;

#[tokio::test]
async fn sends_its_own_deliveries_once_and_leaves_the_others() {
    let fake = FakeFeishu::start().await;
    let binary = env!("CARGO_BIN_EXE_feishu-sender");
    let (logs, statuses) = sender_takes_its_own(binary, &hap_route(&fake.url), "feishu").await;
    assert_eq!(fake.shown().len(), 1, "sent once: {logs}");
    assert_eq!(fake.tokens_issued(), 1);
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("feishu".to_owned(), Status::Sent)
        ]
    );
}
