//! This binary, run as Lambda runs it, against DynamoDB Local.
use std::sync::Arc;

use hookbridge::event::Status;
use hookbridge::store::HistoryStore;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::fake_lambda::FakeLambda;
use hookbridge_tests::fake_runtime::{Answer, invoke};
use hookbridge_tests::{HAP_TOKEN, app_on, config, dynamo_store, events, lambda_env, request};
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
    let app = app_on(config(Some(&dingtalk.url), extra), Arc::new(store.clone())).await;
    let message = hookbridge_tests::fixture("hap-message-todo.json");
    let answer = app
        .ingress
        .handle(
            request("/hap/message", message, Some(HAP_TOKEN)),
            hookbridge::event::now_ms(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let keys: Vec<_> = store
        .deliveries_of(pk)
        .await
        .unwrap()
        .iter()
        .map(|d| d.key())
        .collect();
    assert_eq!(keys.len(), 2, "a card for each of two people");
    assert_eq!(
        app.sender.process(&keys[0]).await.unwrap(),
        Some(Status::Checking)
    );
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
        Answer::Response(json!({"requeued": 0, "handed_off": 1})),
        "{logs}"
    );
    let handed = lambda.take("hb-DingTalkSender");
    assert_eq!(
        handed,
        [json!({"follow_up": [{"pk": keys[0].pk, "sk": keys[0].sk}]})]
    );
    let status = |d: Option<hookbridge::event::Delivery>| d.unwrap().status;
    assert_eq!(
        status(store.delivery(&keys[0]).await.unwrap()),
        Status::Checking,
        "handed on, not re-queued"
    );
    assert_eq!(
        status(store.delivery(&keys[1]).await.unwrap()),
        Status::Pending,
        "not sent yet: nothing to sweep"
    );
}
