//! This binary, run as Lambda runs it, against DynamoDB Local and the fake WeCom.
use hookbridge::event::Status;
use hookbridge_tests::fake_wecom::{FakeWeCom, hap_route};
use hookbridge_tests::{
    config, dynamo_store, ingest, lambda_env, run_stream, sender_takes_its_own,
};

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

/// A HAP to-do's card through this binary, then HAP's finish: the card turns 已处理.
#[tokio::test]
async fn a_todo_card_turns_done_when_the_finish_arrives() {
    let fake = FakeWeCom::start().await;
    let extra = hap_route(&fake.url);
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    let env = lambda_env(&table, None, &extra);
    let binary = env!("CARGO_BIN_EXE_wecom-sender");
    ingest(
        &store,
        config(None, &extra),
        "/hap/message",
        "hap-message-todo.json",
    )
    .await;
    let todo = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let own = "DLV#wecom#000";
    let items = [("INSERT", todo, own)];
    run_stream(binary, &env, &table, &items).await;
    ingest(
        &store,
        config(None, &extra),
        "/hap/todo",
        "hap-finish-todo.json",
    )
    .await;
    let done = "EVT#hap#done#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d#manager4220";
    let logs = run_stream(binary, &env, &table, &[("INSERT", done, own)]).await;
    assert_eq!(
        fake.shown()[0].replaced.as_deref(),
        Some("已处理"),
        "{logs}"
    );
}
