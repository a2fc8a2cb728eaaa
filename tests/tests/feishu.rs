//! Feishu app messages through the whole pipeline against the fake Feishu: a HAP to-do becomes
//! a shared card per person that turns green and 已处理 when it is done, the fleet's token
//! refreshed once, a resend after a lost answer one message (the uuid), people Feishu cannot
//! reach undelivered with why, recall on finish, a group chat, and the IP whitelist.

use hookbridge::event::{Delivery, Outcome, Status};
use hookbridge_tests::fake_feishu::{self, FakeFeishu};
use hookbridge_tests::{Harness, config, fixture};

const TODO: &str = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";

async fn feishu(extra: &str) -> (FakeFeishu, Harness) {
    let fake = FakeFeishu::start().await;
    let text = format!("{}{extra}", fake_feishu::hap_route(&fake.url));
    (fake, Harness::new(config(None, &text)).await)
}

/// Posts a fixture to HAP's `path` and sends what it made.
async fn post(h: &mut Harness, path: &str, name: &str) {
    assert_eq!(h.post(path, &fixture(name)).await.status, 200);
    h.drain().await;
}

async fn of(h: &Harness, pk: &str) -> Vec<Delivery> {
    h.deliveries(pk)
        .await
        .into_iter()
        .filter(|d| d.connector == "feishu")
        .collect()
}

fn note(card: &serde_json::Value) -> String {
    let elements = card["elements"].as_array().unwrap();
    elements.last().unwrap()["elements"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_todo_is_a_card_per_person_that_turns_done() {
    let (fake, mut h) = feishu("").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let shown = fake.shown();
    assert_eq!(shown.len(), 2, "one message a person");
    assert_eq!(shown[0].receive_id, "ou_zhangsan");
    assert!(note(&shown[0].content).starts_with("待处理｜"));
    post(&mut h, "/hap/todo", "hap-finish-todo.json").await;
    for card in fake.shown() {
        assert_eq!(card.patches, 1, "{card:?}");
        assert_eq!(card.content["header"]["template"], "green");
        assert!(
            note(&card.content).starts_with("已处理｜"),
            "{}",
            note(&card.content)
        );
    }
    assert_eq!(fake.tokens_issued(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let (fake, mut h) = feishu("").await;
    post(&mut h, "/hap/message", "hap-message-mention.json").await;
    fake.expire_tokens();
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    assert_eq!(fake.tokens_issued(), 2);
    assert!(of(&h, TODO).await.iter().all(|d| d.status == Status::Sent));
}

#[tokio::test]
async fn a_send_retried_after_a_lost_answer_is_one_message() {
    let (fake, mut h) = feishu("").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let d = of(&h, TODO).await[0].clone();
    let connector = h.app.sender.connector("feishu").unwrap().clone();
    assert!(matches!(connector.deliver(&d).await, Outcome::Sent(_)));
    assert_eq!(
        fake.shown().len(),
        2,
        "the uuid made the resend the same message"
    );
}

#[tokio::test]
async fn people_feishu_cannot_reach_are_undelivered_with_why() {
    let (_, mut h) = feishu("users = [\"ou_outside\", \"ou_nobody\"]\n").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let all = of(&h, TODO).await;
    assert!(
        all.iter().all(|d| d.status == Status::Undelivered),
        "{all:?}"
    );
    let why = all[0].last_error.clone().unwrap_or_default();
    assert!(
        why.contains("230013") || why.contains("outside its availability"),
        "{all:?}"
    );
}

#[tokio::test]
async fn a_route_that_recalls_on_finish_recalls_the_finishers_card() {
    let (fake, mut h) = feishu("recall_on_finish = true\n").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    post(&mut h, "/hap/todo", "hap-finish-todo.json").await;
    // The finish names who did it (manager4220 → ou_zhangsan): their message is taken back,
    // as recall narrows to a finish's recipients for every connector.
    let shown = fake.shown();
    assert!(shown[0].recalled && shown[0].patches == 0, "{shown:?}");
    assert_eq!(shown[0].receive_id, "ou_zhangsan");
    assert!(!shown[1].recalled);
}

#[tokio::test]
async fn a_group_route_sends_one_card_to_the_chat() {
    let route = format!("group = \"{}\"\n", fake_feishu::CHAT);
    let (fake, mut h) = feishu(&route).await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let shown = fake.shown();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].receive_id, fake_feishu::CHAT);
}

/// Feishu refuses a 6th message in a second to one user (230020); the sender waits for the
/// second instead, so all of them go through at the first try.
#[tokio::test]
async fn six_messages_to_one_person_in_a_second_wait_for_their_turn() {
    let (fake, mut h) = feishu("").await;
    let mut mention: serde_json::Value =
        serde_json::from_str(&fixture("hap-message-mention.json")).unwrap();
    for i in 0..6 {
        mention["messageId"] = serde_json::json!(format!("mention-{i}"));
        assert_eq!(
            h.post("/hap/message", &mention.to_string()).await.status,
            200
        );
    }
    h.drain().await;
    assert_eq!((fake.shown().len(), fake.refused()), (6, 0));
}

/// Over Feishu's per-second app limit (99991400), the answer's `x-ogw-ratelimit-reset` says how
/// long to wait: the throttled card is tried again a second later, not a minute, and spends no
/// attempt.
#[tokio::test]
async fn a_throttled_send_waits_as_long_as_feishu_says() {
    let (fake, mut h) = feishu("").await;
    fake.set_qps_limit(1);
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let all = of(&h, TODO).await;
    let held: Vec<_> = all
        .iter()
        .filter(|d| d.status == Status::Retrying)
        .collect();
    assert_eq!((fake.shown().len(), held.len()), (1, 1), "{all:?}");
    let wait = held[0].next_attempt_at.unwrap() - hookbridge::event::now_ms();
    assert!(wait <= 2_000, "held {wait} ms, not a minute: {:?}", held[0]);
    assert_eq!(held[0].attempts, 0, "a throttle is not an attempt");
}
