//! This binary, run as Lambda runs it, against DynamoDB Local.
use hookbridge::event::Status;
use hookbridge::store::HistoryStore;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_lambda::FakeLambda;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{dynamo_store, events, lambda_env, sent_to_be_checked};
use serde_json::json;

#[tokio::test]
async fn sweeps_on_a_schedule_event() {
    let store = dynamo_store().await;
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_retry-sweeper"),
        &lambda_env(store.table(), None, ""),
        events::schedule(),
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(json!({"requeued": 0, "handed_off": 0})),
        "{logs}"
    );
}

/// A DingTalk send due for its follow-up goes to the function the stack names for DingTalk, as
/// an asynchronous Invoke with its key; the delivery is not re-queued (no write).
#[tokio::test]
async fn hands_a_due_follow_up_to_the_dingtalk_sender_function() {
    let dingtalk = FakeDingTalk::start().await;
    let store = dynamo_store().await;
    // Due at once, on its claim's entry (lapsing a second after the claim).
    let extra =
        "follow_up = \"failures\"\nfollow_up_delay_secs = 0\n\n[delivery]\nclaim_lease_secs = 1\n";
    let (_, keys) = sent_to_be_checked(&store, &dingtalk.url, extra).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    let lambda = FakeLambda::holding(&["hb-DingTalkSender"]).await;
    let mut env = lambda_env(store.table(), None, "");
    env.push((
        "HOOKBRIDGE_FOLLOW_UP_FUNCTIONS",
        "dingtalk=hb-DingTalkSender".into(),
    ));
    env.push(("AWS_ENDPOINT_URL_LAMBDA", lambda.url.clone()));
    let (answer, logs) = invoke(
        env!("CARGO_BIN_EXE_retry-sweeper"),
        &env,
        events::schedule(),
    )
    .await;
    assert_eq!(
        answer,
        Answer::Response(json!({"requeued": 0, "handed_off": 2})),
        "{logs}"
    );
    let handed = lambda.take("hb-DingTalkSender");
    assert_eq!(handed.len(), 1, "one invocation for the sweep: {handed:?}");
    let mut keys_handed: Vec<hookbridge::event::DeliveryKey> =
        serde_json::from_value(handed[0]["follow_up"].clone()).unwrap();
    keys_handed.sort();
    assert_eq!(keys_handed, keys);
    for key in &keys {
        let d = store.delivery(key).await.unwrap().unwrap();
        assert_eq!(d.status, Status::Checking, "handed on, not re-queued");
    }
}
