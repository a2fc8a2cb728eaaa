//! This binary, run as Lambda runs it, against DynamoDB Local and the fake WeCom.
use hookbridge::event::Status;
use hookbridge_tests::fake_wecom::{FakeWeCom, hap_route};
use hookbridge_tests::sender_takes_its_own;

#[tokio::test]
async fn sends_its_own_deliveries_once_and_leaves_the_others() {
    let fake = FakeWeCom::start().await;
    let wecom = hap_route(&fake.url);
    let binary = env!("CARGO_BIN_EXE_wecom-sender");
    let (logs, statuses) = sender_takes_its_own(binary, &wecom, "wecom").await;
    assert_eq!(fake.calls("message/send").len(), 1, "sent once: {logs}");
    assert_eq!(fake.tokens_issued(), 1);
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("wecom".to_owned(), Status::Sent)
        ]
    );
}
