//! WeCom app messages through the whole pipeline against the fake WeCom: a HAP to-do becomes a
//! button card that turns 已处理 when the to-do is done (or, past its code, a short text), the
//! fleet's token refreshed once when it expires, people WeCom does not take surfaced, recall
//! on finish, and the 企业可信IP's 60020.

use hookbridge::event::{Delivery, Status};
use hookbridge_tests::fake_wecom::{self, FakeWeCom};
use hookbridge_tests::{Harness, config, fixture};
use serde_json::json;

const TODO: &str = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";

async fn wecom(extra: &str) -> (FakeWeCom, Harness) {
    let fake = FakeWeCom::start().await;
    let text = format!("{}{extra}", fake_wecom::hap_route(&fake.url));
    (fake, Harness::new(config(None, &text)).await)
}

async fn of(h: &Harness, pk: &str) -> Vec<Delivery> {
    h.deliveries(pk)
        .await
        .into_iter()
        .filter(|d| d.connector == "wecom")
        .collect()
}

/// Posts a fixture to HAP's `path` and sends what it made.
async fn post(h: &mut Harness, path: &str, name: &str) {
    assert_eq!(h.post(path, &fixture(name)).await.status, 200);
    h.drain().await;
}

async fn todo_then_finish(h: &mut Harness) {
    post(h, "/hap/message", "hap-message-todo.json").await;
    post(h, "/hap/todo", "hap-finish-todo.json").await;
}

#[tokio::test]
async fn a_todo_is_a_card_that_turns_done_when_the_todo_is_finished() {
    let (fake, mut h) = wecom("").await;
    todo_then_finish(&mut h).await;
    let shown = fake.shown();
    assert_eq!(shown.len(), 1, "{shown:?}");
    let card = &shown[0];
    assert_eq!(card.users, ["zhangsan", "lisi"]);
    assert_eq!(
        card.body["template_card"]["card_type"],
        "button_interaction"
    );
    assert_eq!(
        card.replaced.as_deref(),
        Some("已处理"),
        "the button now reads 已处理"
    );
    let update = &fake.calls("message/update_template_card")[0];
    assert_eq!(update["userids"], json!(["zhangsan", "lisi"]));
    assert_eq!(fake.tokens_issued(), 1, "one token for every call");
    let sent = of(&h, TODO).await;
    assert_eq!(sent[0].status, Status::Sent);
    assert_eq!(sent[0].result.as_ref().unwrap()["response_code"], "rc-1");
}

#[tokio::test]
async fn past_its_code_a_card_is_followed_by_a_text_saying_it_is_done() {
    let (fake, mut h) = wecom("").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    fake.age_codes();
    post(&mut h, "/hap/todo", "hap-finish-todo.json").await;
    let shown = fake.shown();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0].replaced, None);
    let text = shown[1].body["text"]["content"].as_str().unwrap();
    assert!(text.starts_with("【已处理】"), "{text}");
    assert_eq!(shown[1].users, ["zhangsan", "lisi"]);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_send_goes_through() {
    let (fake, mut h) = wecom("").await;
    post(&mut h, "/hap/message", "hap-message-mention.json").await;
    fake.expire_tokens();
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(of(&h, TODO).await[0].status, Status::Sent);
}

#[tokio::test]
async fn people_wecom_does_not_take_are_said_and_nobody_reached_is_undelivered() {
    let (fake, mut h) = wecom("users = [\"zhangsan\", \"nobody\", \"wangwu\"]\n").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let d = &of(&h, TODO).await[0];
    assert_eq!(d.status, Status::Sent, "zhangsan got it");
    let note = d.result.as_ref().unwrap()["note"].as_str().unwrap();
    assert!(note.contains("nobody") && note.contains("wangwu"), "{note}");

    let (_, mut h) = wecom("users = [\"nobody\"]\n").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let d = &of(&h, TODO).await[0];
    assert_eq!(d.status, Status::Undelivered, "{d:?}");
    assert!(fake.shown().len() == 1);
}

#[tokio::test]
async fn a_route_that_recalls_on_finish_recalls_the_card() {
    let (fake, mut h) = wecom("recall_on_finish = true\n").await;
    todo_then_finish(&mut h).await;
    let shown = fake.shown();
    let finish = h
        .deliveries("EVT#hap#done#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d#manager4220")
        .await;
    assert!(
        shown[0].recalled,
        "{finish:?} {:?}",
        fake.calls("message/recall")
    );
    assert_eq!(shown[0].replaced, None);
}

#[tokio::test]
async fn a_send_retried_after_a_lost_answer_shows_once() {
    let (fake, mut h) = wecom("").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let d = of(&h, TODO).await[0].clone();
    let connector = h.app.sender.connector("wecom").unwrap().clone();
    assert!(matches!(
        connector.deliver(&d).await,
        hookbridge::event::Outcome::Sent(_)
    ));
    assert_eq!(
        (fake.calls("message/send").len(), fake.shown().len()),
        (2, 1)
    );
}

/// With `users_by = "mobile"`, recipients are looked up once each; the card goes to the userid
/// found, a mobile WeCom has nobody for is said in the note, and the finish names the userid.
#[tokio::test]
async fn recipients_by_mobile_are_looked_up_once_and_the_unknown_said() {
    let fake = FakeWeCom::start().await;
    let text = fake_wecom::hap_route(&fake.url)
        .replace("base_url", "users_by = \"mobile\"\nbase_url")
        .replace(
            "manager4220 = \"zhangsan\"",
            "manager4220 = \"13800000001\"",
        )
        .replace("= \"lisi\"", "= \"13900000000\"");
    let mut h = Harness::new(config(None, &text)).await;
    todo_then_finish(&mut h).await;
    let shown = fake.shown();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].users, ["zhangsan"]);
    assert_eq!(shown[0].replaced.as_deref(), Some("已处理"));
    let update = &fake.calls("message/update_template_card")[0];
    assert_eq!(update["userids"], json!(["zhangsan"]));
    let d = &of(&h, TODO).await[0];
    assert_eq!(d.status, Status::Sent);
    let note = d.result.as_ref().unwrap()["note"].as_str().unwrap();
    assert!(
        note.contains("13900000000") && note.contains("users_by = mobile"),
        "{note}"
    );

    let mut again: serde_json::Value =
        serde_json::from_str(&fixture("hap-message-todo.json")).unwrap();
    again["messageId"] = json!("another-todo");
    again["message"] = json!("another to-do");
    assert_eq!(h.post("/hap/message", &again.to_string()).await.status, 200);
    h.drain().await;
    assert_eq!(fake.shown().len(), 2);
    assert_eq!(
        fake.calls("user/getuserid").len(),
        2,
        "each mobile asked once, the unknown one too"
    );

    let text = text.replace("= \"13800000001\"", "= \"13700000000\"");
    let mut h = Harness::new(config(None, &text)).await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let d = &of(&h, TODO).await[0];
    assert_eq!(d.status, Status::Undelivered, "nobody found: {d:?}");
    assert_eq!(fake.shown().len(), 2, "nothing sent");
}

/// WeCom drops, with an ok answer, an app's 31st message in a minute to one person: the 31st
/// is held for the next minute instead, without spending an attempt.
#[tokio::test]
async fn the_31st_message_in_a_minute_to_one_person_waits_instead_of_being_dropped() {
    let (fake, mut h) = wecom("").await;
    let mut mention: serde_json::Value =
        serde_json::from_str(&fixture("hap-message-mention.json")).unwrap();
    for i in 0..31 {
        mention["messageId"] = json!(format!("mention-{i}"));
        // Different words: WeCom's duplicate check would show the same ones once anyway.
        mention["message"] = json!(format!("第 {i} 条：请补充二期报价。"));
        assert_eq!(
            h.post("/hap/message", &mention.to_string()).await.status,
            200
        );
    }
    h.drain().await;
    let to_ops1 = fake.shown().iter().filter(|s| s.users == ["ops1"]).count();
    assert_eq!((to_ops1, fake.dropped()), (30, 0));
    let held = of(&h, "EVT#hap#mention-30").await;
    assert_eq!(held[0].status, Status::Retrying, "{held:?}");
    assert_eq!(held[0].attempts, 0, "a wait spends no attempt");
    let why = held[0].last_error.as_deref().unwrap_or_default();
    assert!(why.contains("30 a minute"), "{why}");
}

/// Past one of WeCom's per-minute frequency limits (45009) the send is held a minute (WeCom says
/// not how long), plus up to half of it so that held sends do not return together; no attempt
/// is spent.
#[tokio::test]
async fn a_send_over_wecoms_frequency_limit_is_held_a_minute() {
    let (fake, mut h) = wecom("").await;
    fake.set_per_minute_limit(1);
    post(&mut h, "/hap/message", "hap-message-mention.json").await;
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    let held = of(&h, TODO).await;
    assert_eq!((fake.shown().len(), held[0].status), (1, Status::Retrying));
    assert_eq!(held[0].attempts, 0, "a throttle spends no attempt");
    let wait = held[0].next_attempt_at.unwrap() - hookbridge::event::now_ms();
    assert!((55_000..=90_000).contains(&wait), "held {wait} ms");
    assert!(
        held[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("45009")
    );
}

/// With `account_limit`, a send that would pass the day's person-messages (× 200) waits for
/// the next Beijing day; the fleet's count is read once, so a new process holds it too.
#[tokio::test]
async fn a_send_past_the_days_person_messages_waits_for_the_next_day() {
    use hookbridge::event::{beijing_day, now_ms};
    let fake = FakeWeCom::start().await;
    let text = fake_wecom::hap_route(&fake.url).replace("base_url", "account_limit = 1\nbase_url");
    let mut h = Harness::new(config(None, &text)).await;
    let limit = 200;
    let name = format!(
        "wecom#{}#{}#people",
        fake_wecom::CORP_ID,
        fake_wecom::AGENT_ID
    );
    let (day, next) = beijing_day(now_ms());
    h.app
        .store
        .add_usage(&name, &day, limit - 1, limit)
        .await
        .unwrap();
    post(&mut h, "/hap/message", "hap-message-mention.json").await;
    assert_eq!(fake.shown().len(), 1, "one person-message fits");
    post(&mut h, "/hap/message", "hap-message-todo.json").await;
    assert_eq!(fake.shown().len(), 1, "two more do not");
    let held = &of(&h, TODO).await[0];
    assert_eq!(held.status, Status::Retrying);
    assert!(held.next_attempt_at >= Some(next), "{held:?}");
    let why = held.last_error.as_deref().unwrap_or_default();
    assert!(why.contains("account_limit"), "{why}");
}

/// An alert is a card reading 告警中 whose button reads 已恢复 once the alert resolves.
#[tokio::test]
async fn an_alert_card_turns_resolved() {
    let fake = FakeWeCom::start().await;
    let extra = format!(
        "{}\n[sources.alertmanager]\nbearer_tokens = [\"plain:am\"]\n\
         [[routes]]\nsource = \"alertmanager\"\nconnector = \"wecom\"\nkinds = [\"alert\"]\nusers = [\"ops1\"]\n",
        fake_wecom::hap_route(&fake.url)
    );
    let mut h = Harness::new(config(None, &extra)).await;
    for name in ["alertmanager-firing.json", "alertmanager-one-resolved.json"] {
        let mut req =
            hookbridge_tests::request("/alertmanager", hookbridge_tests::alerts_now(name), None);
        req.headers
            .insert(http::header::AUTHORIZATION, "Bearer am".parse().unwrap());
        let resp = h.app.ingress.handle(req, hookbridge::event::now_ms()).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        h.drain().await;
    }
    let shown = fake.shown();
    assert_eq!(shown.len(), 2, "one card per alert: {shown:?}");
    let desc = shown[0].body["template_card"]["main_title"]["desc"]
        .as_str()
        .unwrap();
    assert!(desc.starts_with("告警中｜"), "{desc}");
    assert_eq!(
        shown[0].replaced.as_deref(),
        Some("已恢复"),
        "the resolved one"
    );
    assert_eq!(shown[1].replaced, None, "the other still fires");
}
