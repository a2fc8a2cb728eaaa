//! This binary, run as Lambda runs it, against DynamoDB Local and the fake 浙政钉 gateway.
use hookbridge::event::Status;
use hookbridge_tests::fake_govding::{APP_SECRET, FakeGovDing, hap_route};
use hookbridge_tests::sender_takes_its_own;

#[tokio::test]
async fn sends_its_own_deliveries_and_leaves_the_others() {
    let fake = FakeGovDing::start().await;
    let govding = format!(
        "{}\n[recipients.govding.map]\nwangwu_2231 = \"10001\"\n",
        hap_route(&fake.url, APP_SECRET)
    );
    let binary = env!("CARGO_BIN_EXE_govding-sender");
    let (logs, statuses) = sender_takes_its_own(binary, &govding, "govding").await;
    assert_eq!(fake.calls().len(), 1, "sent once: {logs}");
    assert_eq!(
        statuses,
        [
            ("dingtalk".to_owned(), Status::Pending),
            ("govding".to_owned(), Status::Sent)
        ]
    );
}
