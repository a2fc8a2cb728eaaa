//! The DingTalk connector through the whole pipeline (ingress → store → sender loop) against
//! the fake DingTalk server, which enforces the real rules.

use std::sync::Arc;
use std::time::Duration;

use hookbridge::event::{Delivery, Status};
use hookbridge::store::Store;
use hookbridge::store::memory::MemoryStore;
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::{Harness, app_on, config, dynamo_store};
use serde_json::{Value, json};

const SEND: &str = "asyncsend_v2";
const BAR: &str = "status_bar/update";
const TOKEN: &str = "/gettoken";

fn todo(id: &str, targets: usize) -> String {
    let users: Vec<Value> = (0..targets).map(|i| json!(format!("u{i}"))).collect();
    json!({
        "messageId": id,
        "message": "张三 提交了「办公设备采购申请」，请您审批。",
        "messageTypeV2": 14,
        "appName": "采购管理",
        "redirectUrl": "https://hap.example.com/app/1/workflow/2/record/3",
        "targets": users,
    })
    .to_string()
}

fn notice(id: &str, targets: usize) -> String {
    let users: Vec<Value> = (0..targets).map(|i| json!(format!("u{i}"))).collect();
    json!({"messageId": id, "message": "合同将于 7 天后到期", "messageTypeV2": 16, "appName": "合同管理", "targets": users})
        .to_string()
}

fn finish(id: &str, user: Option<&str>) -> String {
    match user {
        Some(u) => json!({"messageId": id, "userId": u}),
        None => json!({"messageId": id}),
    }
    .to_string()
}

async fn live(extra: &str) -> (FakeDingTalk, Harness) {
    let fake = FakeDingTalk::start().await;
    let h = Harness::new(config(Some(&fake.url), extra)).await;
    (fake, h)
}

fn task_id(d: &Delivery) -> i64 {
    d.result
        .as_ref()
        .and_then(|r| r["task_id"].as_i64())
        .expect("task_id")
}

fn status_of(fake: &FakeDingTalk, user: &str) -> Vec<Option<String>> {
    fake.tasks()
        .into_iter()
        .filter(|t| t.userids.iter().any(|u| u == user))
        .map(|t| t.status)
        .collect()
}

#[tokio::test]
async fn one_token_serves_many_sends_and_goes_only_in_the_query() {
    let (fake, mut h) = live("").await;
    for i in 0..10 {
        assert_eq!(
            h.post("/hap/message", &notice(&format!("m{i}"), 1))
                .await
                .status,
            200
        );
    }
    assert_eq!(h.drain().await, vec![Status::Sent; 10]);
    assert_eq!(fake.count(TOKEN), 1);
    let sends = fake.calls(SEND);
    assert_eq!(sends.len(), 10);
    assert!(
        sends
            .iter()
            .all(|c| c.query.get("access_token").map(String::as_str) == Some("fake-token-1"))
    );
    // Counted against the monthly quota: the 10 sends, not the token.
    assert_eq!(h.calls_counted("dingtalk#ding-fake-key", 10).await, 10);
    let month = hookbridge::event::beijing_month(hookbridge::event::now_ms());
    let usage = h.app.store.usage_in(&month).await.unwrap();
    let counted: Vec<(&str, u64, u64)> = usage
        .iter()
        .map(|u| (u.name.as_str(), u.calls, u.quota))
        .collect();
    assert_eq!(counted, [("dingtalk#ding-fake-key", 10, 5_000)]);
}

#[tokio::test]
async fn a_token_that_expires_mid_run_is_refreshed_once() {
    let (fake, mut h) = live("").await;
    for i in 0..3 {
        h.post("/hap/message", &notice(&format!("a{i}"), 1)).await;
    }
    h.drain().await;
    fake.expire_token();
    for i in 0..3 {
        h.post("/hap/message", &notice(&format!("b{i}"), 1)).await;
    }
    assert_eq!(h.drain().await, vec![Status::Sent; 3]);
    assert_eq!(fake.count(TOKEN), 2, "one refresh, not one per send");
    assert_eq!(fake.count(SEND), 7, "the rejected send was retried at once");
    assert_eq!(fake.tasks().len(), 6);
}

#[tokio::test]
async fn missing_or_zero_expires_in_does_not_cause_a_refresh_loop() {
    for expires_in in [None, Some(0), Some(-5)] {
        let (fake, mut h) = live("").await;
        fake.set_expires_in(expires_in);
        for i in 0..5 {
            h.post("/hap/message", &notice(&format!("m{i}"), 1)).await;
        }
        assert_eq!(h.drain().await, vec![Status::Sent; 5]);
        assert_eq!(fake.count(TOKEN), 1, "expires_in {expires_in:?}");
    }
}

/// Eight containers start at once, each with an empty in-memory token cache, sharing the
/// table: the lease lets one of them call gettoken.
async fn concurrent_cold_starts_fetch_one_token(store: Arc<dyn Store>) {
    let fake = FakeDingTalk::start().await;
    fake.set_latency(Duration::from_millis(150));
    let cfg = config(Some(&fake.url), "max_qps = 1000");
    let mut apps = vec![];
    for _ in 0..8 {
        apps.push(app_on(cfg.clone(), store.clone()).await);
    }
    let mut keys = vec![];
    for i in 0..8 {
        let req = hookbridge_tests::request(
            "/hap/message",
            notice(&format!("c{i}"), 1),
            Some(hookbridge_tests::HAP_TOKEN),
        );
        let resp = apps[0]
            .ingress
            .handle(req, hookbridge::event::now_ms())
            .await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        keys.extend(
            store
                .deliveries_of(&format!("EVT#hap#c{i}"))
                .await
                .unwrap()
                .iter()
                .map(Delivery::key),
        );
    }
    let mut runs = tokio::task::JoinSet::new();
    for (app, key) in apps.into_iter().zip(keys) {
        runs.spawn(async move { app.sender.process(&key).await.unwrap() });
    }
    let statuses = runs.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == Some(Status::Sent)),
        "{statuses:?}"
    );
    assert_eq!(fake.count(TOKEN), 1);
}

#[tokio::test]
async fn concurrent_cold_starts_fetch_one_token_memory() {
    concurrent_cold_starts_fetch_one_token(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn concurrent_cold_starts_fetch_one_token_dynamodb() {
    concurrent_cold_starts_fetch_one_token(Arc::new(dynamo_store().await)).await;
}

#[tokio::test]
async fn twelve_todo_targets_get_twelve_cards_and_one_finish_flips_one() {
    let (fake, mut h) = live("").await;
    let resp = h.post("/hap/message", &todo("t12", 12)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(h.drain().await, vec![Status::Sent; 12]);
    let tasks = fake.tasks();
    assert_eq!(tasks.len(), 12);
    let mut ids: Vec<i64> = tasks.iter().map(|t| t.task_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 12, "12 distinct task ids");
    assert!(
        tasks
            .iter()
            .all(|t| t.userids.len() == 1 && t.status.as_deref() == Some("待处理"))
    );
    let cards = h.deliveries("EVT#hap#t12").await;
    for (card, task) in cards.iter().zip(&tasks) {
        assert_eq!(
            (task_id(card), &card.recipients),
            (task.task_id, &task.userids)
        );
    }

    h.post("/hap/todo", &finish("t12", Some("u7"))).await;
    assert_eq!(h.drain().await, vec![Status::Sent]);
    assert_eq!(fake.count(BAR), 1);
    assert_eq!(status_of(&fake, "u7"), [Some("已处理".to_owned())]);
    for u in (0..12).filter(|i| *i != 7) {
        assert_eq!(
            status_of(&fake, &format!("u{u}")),
            [Some("待处理".to_owned())],
            "u{u}"
        );
    }
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn a_finish_without_user_or_with_an_unknown_user_flips_every_card() {
    for user in [None, Some("stranger")] {
        let (fake, mut h) = live("").await;
        h.post("/hap/message", &todo("t", 4)).await;
        h.drain().await;
        h.post("/hap/todo", &finish("t", user)).await;
        assert_eq!(h.drain().await, vec![Status::Sent]);
        assert_eq!(fake.count(BAR), 4, "{user:?}");
        assert!(
            fake.tasks()
                .iter()
                .all(|t| t.status.as_deref() == Some("已处理"))
        );
    }
}

#[tokio::test]
async fn grouped_mode_sends_three_cards_for_twelve_and_flips_a_group() {
    let (fake, mut h) = live("todo_fanout = \"chunk5\"").await;
    h.post("/hap/message", &todo("g", 12)).await;
    assert_eq!(h.drain().await, vec![Status::Sent; 3]);
    let sizes: Vec<usize> = fake.tasks().iter().map(|t| t.userids.len()).collect();
    assert_eq!(sizes, [5, 5, 2]);
    h.post("/hap/todo", &finish("g", Some("u6"))).await;
    h.drain().await;
    let done: Vec<usize> = fake
        .tasks()
        .iter()
        .filter(|t| t.status.as_deref() == Some("已处理"))
        .map(|t| t.userids.len())
        .collect();
    assert_eq!(done, [5], "the card u6 shares with four others");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn a_finish_that_arrives_before_the_cards_are_sent_waits() {
    let (fake, mut h) = live("").await;
    h.post("/hap/message", &todo("early", 2)).await;
    h.post("/hap/todo", &finish("early", Some("u1"))).await;
    let cards = [h.next_key().unwrap(), h.next_key().unwrap()];
    let update = h.next_key().unwrap();
    assert_eq!(
        h.app.sender.process(&update).await.unwrap(),
        Some(Status::Waiting)
    );
    let waiting = &h.deliveries(&update.pk).await[0];
    assert!(
        waiting
            .last_error
            .as_deref()
            .unwrap()
            .contains("is pending"),
        "{waiting:?}"
    );
    for c in &cards {
        assert_eq!(h.app.sender.process(c).await.unwrap(), Some(Status::Sent));
    }
    assert_eq!(h.sweep_after(3600).await, vec![Status::Sent]);
    assert_eq!(status_of(&fake, "u1"), [Some("已处理".to_owned())]);
    assert_eq!(status_of(&fake, "u0"), [Some("待处理".to_owned())]);
}

/// The card needs seven attempts; the finish waits through all of them without spending its
/// budget, then survives a transient failure of its own, and the card ends done.
#[tokio::test]
async fn a_finish_that_waits_long_for_its_card_still_turns_it_done() {
    let (fake, mut h) = live("").await;
    let failing = r#"{"errcode":500,"errmsg":"系统错误"}"#;
    fake.inject(
        "/topapi/message/corpconversation/asyncsend_v2",
        200,
        failing,
        7,
    );
    h.post("/hap/message", &todo("slow", 1)).await;
    h.post("/hap/todo", &finish("slow", Some("u0"))).await;
    let mut waits = 0;
    let mut statuses = h.drain().await;
    for _ in 0..30 {
        waits += statuses.iter().filter(|s| **s == Status::Waiting).count();
        if statuses.contains(&Status::Sent) {
            break;
        }
        statuses = h.sweep_after(3600).await;
    }
    assert!(
        waits >= 8,
        "the finish waited {waits} times: more than a whole budget"
    );
    let finish_pk = "EVT#hap#done#slow#u0";
    assert_eq!(h.deliveries(finish_pk).await[0].attempts, 0);
    // The card is sent; the finish's own first call fails once.
    fake.inject(
        "/topapi/message/corpconversation/status_bar/update",
        200,
        failing,
        1,
    );
    for _ in 0..10 {
        if h.deliveries(finish_pk).await[0].status == Status::Sent {
            break;
        }
        h.sweep_after(3600).await;
    }
    let update = &h.deliveries(finish_pk).await[0];
    assert_eq!(
        (update.status, update.attempts),
        (Status::Sent, 2),
        "{update:?}"
    );
    assert_eq!(status_of(&fake, "u0"), [Some("已处理".to_owned())]);
}

#[tokio::test]
async fn a_finish_for_an_unknown_todo_is_skipped_not_dead() {
    let (fake, mut h) = live("").await;
    assert_eq!(
        h.post("/hap/todo", &finish("never-seen", Some("u1")))
            .await
            .status,
        200
    );
    assert_eq!(h.drain().await, vec![Status::Skipped]);
    assert_eq!(fake.count(BAR), 0);
}

#[tokio::test]
async fn a_notice_to_150_users_is_two_sends() {
    let (fake, mut h) = live("").await;
    h.post("/hap/message", &notice("n150", 150)).await;
    assert_eq!(h.drain().await, vec![Status::Sent; 2]);
    let sizes: Vec<usize> = fake.tasks().iter().map(|t| t.userids.len()).collect();
    assert_eq!(sizes, [100, 50]);
    assert!(fake.tasks().iter().all(|t| t.msgtype == "markdown"));
}

#[tokio::test]
async fn a_long_message_is_cut_to_fit_2048_bytes() {
    let (fake, mut h) = live("").await;
    let long = "很长的审批说明。".repeat(300);
    let body = json!({"messageId": "long", "message": long, "messageTypeV2": 14, "redirectUrl": "https://hap/x", "targets": ["u1"]});
    h.post("/hap/message", &body.to_string()).await;
    assert_eq!(h.drain().await, vec![Status::Sent]);
    let msg = &fake.tasks()[0].content;
    assert!(serde_json::to_vec(msg).unwrap().len() <= 2048);
    let rows = msg["oa"]["body"]["form"].as_array().unwrap();
    let message = rows.iter().find(|r| r["key"] == "消息：").unwrap();
    assert!(
        message["value"].as_str().unwrap().ends_with('…'),
        "{message}"
    );
}

#[tokio::test]
async fn transient_failures_and_throttles_retry_through_the_sweeper() {
    // (status, answer, attempts spent when it is finally sent): a throttle spends none.
    for (status, answer, attempts) in [
        (200, r#"{"errcode":-1,"errmsg":"系统繁忙"}"#, 1),
        (
            200,
            r#"{"errcode":88,"sub_code":"90018","sub_msg":"调用太频繁"}"#,
            1,
        ),
        (200, r#"{"errcode":500,"errmsg":"系统错误"}"#, 2),
        (502, "Bad Gateway", 2),
    ] {
        let (fake, mut h) = live("").await;
        fake.inject(
            "/topapi/message/corpconversation/asyncsend_v2",
            status,
            answer,
            1,
        );
        h.post("/hap/message", &notice("tr", 1)).await;
        assert_eq!(h.drain().await, vec![Status::Retrying], "{answer}");
        assert_eq!(h.sweep_after(0).await, vec![], "not due at once");
        assert_eq!(h.sweep_after(3600).await, vec![Status::Sent], "{answer}");
        let d = &h.deliveries("EVT#hap#tr").await[0];
        assert_eq!(
            (d.attempts, d.last_error.clone()),
            (attempts, None),
            "{answer}"
        );
    }
}

/// An IP ban (an HTML page or a `punish` answer) holds every call for five minutes: the sweeps
/// in between make no call and spend no attempt.
#[tokio::test]
async fn an_ip_ban_holds_every_call_without_calling() {
    let (fake, mut h) = live("").await;
    fake.inject(
        "/topapi/message/corpconversation/asyncsend_v2",
        200,
        "<html><body>访问受限</body></html>",
        1,
    );
    h.post("/hap/message", &notice("ban", 1)).await;
    h.post("/hap/message", &notice("ban2", 1)).await;
    assert_eq!(h.drain().await, vec![Status::Retrying; 2]);
    assert_eq!(fake.count(SEND), 1, "the second send was held, not made");
    assert_eq!(h.sweep_after(3600).await, vec![Status::Retrying; 2]);
    assert_eq!(fake.count(SEND), 1);
    for pk in ["EVT#hap#ban", "EVT#hap#ban2"] {
        let d = &h.deliveries(pk).await[0];
        assert!(d.attempts <= 1, "{d:?}");
        assert!(
            d.last_error.as_deref().unwrap().contains("holding calls"),
            "{d:?}"
        );
    }
}

/// Back-pressure is not failure: more throttles in a row than the attempt budget spend no
/// attempt, and the notification still goes out.
#[tokio::test]
async fn a_long_run_of_throttles_spends_no_attempt() {
    let (fake, mut h) = live("").await;
    let too_fast = r#"{"errcode":90018,"errmsg":"当前应用调用该接口的并发量已超过上限"}"#;
    fake.inject(
        "/topapi/message/corpconversation/asyncsend_v2",
        200,
        too_fast,
        9,
    );
    h.post("/hap/message", &notice("busy", 1)).await;
    assert_eq!(
        h.sweep_until(&[Status::Sent], 3600, 40).await,
        [Status::Sent]
    );
    assert_eq!(fake.count(SEND), 10);
    assert_eq!(h.deliveries("EVT#hap#busy").await[0].attempts, 1);
}

#[tokio::test]
async fn permanent_failures_are_dead_with_the_reason() {
    let (fake, mut h) = live("").await;
    fake.inject(
        "/topapi/message/corpconversation/asyncsend_v2",
        200,
        r#"{"errcode":60020,"errmsg":"访问ip不在白名单之中"}"#,
        1,
    );
    h.post("/hap/message", &notice("dead", 1)).await;
    assert_eq!(h.drain().await, vec![Status::Dead]);
    let d = &h.deliveries("EVT#hap#dead").await[0];
    let reason = d.last_error.as_deref().unwrap();
    assert!(
        reason.contains("60020") && reason.contains("whitelist"),
        "{reason}"
    );
    assert!(h.sweep_after(86_400).await.is_empty(), "dead stays dead");
}

#[tokio::test]
async fn wrong_credentials_are_dead_with_a_hint() {
    let fake = FakeDingTalk::start().await;
    let mut cfg = config(Some(&fake.url), "");
    let dingtalk = cfg.connectors.dingtalk.as_mut().unwrap();
    dingtalk.app_secret = Some(String::from("plain:wrong").try_into().unwrap());
    let mut h = Harness::new(cfg).await;
    h.post("/hap/message", &notice("cred", 1)).await;
    assert_eq!(h.drain().await, vec![Status::Dead]);
    let reason = h.deliveries("EVT#hap#cred").await[0]
        .last_error
        .clone()
        .unwrap();
    assert!(
        reason.contains("40096") && reason.contains("app_secret"),
        "{reason}"
    );
    assert_eq!(fake.count(SEND), 0);
    // The failed refresh gave its lease up: another sender fetches at once, instead of every
    // delivery of the fleet waiting out a 10 s lease for a token that will not come.
    let now = hookbridge::event::now_ms();
    let name = format!("dingtalk#{}", hookbridge_tests::fake_dingtalk::APP_KEY);
    assert!(
        h.app
            .store
            .lease(&name, "another", now, now + 1)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn the_last_attempt_makes_a_transient_failure_dead() {
    let (fake, mut h) = live("").await;
    let failing = r#"{"errcode":500,"errmsg":"系统错误"}"#;
    fake.inject(
        "/topapi/message/corpconversation/asyncsend_v2",
        200,
        failing,
        100,
    );
    h.post("/hap/message", &notice("budget", 1)).await;
    assert_eq!(
        h.sweep_until(&[Status::Dead], 86_400, 20).await,
        [Status::Dead]
    );
    let d = &h.deliveries("EVT#hap#budget").await[0];
    assert_eq!(d.attempts, 8, "the default max_attempts");
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 8 attempts")
    );
}

#[tokio::test]
async fn pacing_stays_under_the_20_qps_limit() {
    // Unpaced, a burst of 30 trips DingTalk's 20 QPS limit...
    let (fake, mut h) = live("max_qps = 1000").await;
    for i in 0..30 {
        h.post("/hap/message", &notice(&format!("p{i}"), 1)).await;
    }
    let statuses = h.drain().await;
    assert!(
        statuses.contains(&Status::Retrying),
        "the fake must throttle an unpaced burst"
    );
    assert!(fake.count(SEND) == 30);
    // ...paced below the limit, it does not.
    let (fake, mut h) = live("max_qps = 15").await;
    for i in 0..30 {
        h.post("/hap/message", &notice(&format!("p{i}"), 1)).await;
    }
    assert_eq!(h.drain().await, vec![Status::Sent; 30]);
    assert_eq!(fake.count(SEND), 30);
}

/// DingTalk changes status bars within 7 days of the send: an older card is left alone without a
/// call, the others still flip, and a finish whose only card is too old is dead with the reason.
#[tokio::test]
async fn status_bars_older_than_7_days_are_not_called_for() {
    use hookbridge::event::Event;
    let (fake, mut sent) = live("").await;
    assert_eq!(
        sent.post("/hap/message", &todo("t-old", 2)).await.status,
        200
    );
    assert_eq!(sent.drain().await, vec![Status::Sent; 2]);
    let pk = "EVT#hap#t-old";
    let mut cards = sent.deliveries(pk).await;
    let eight_days = 8 * 24 * 3_600_000;
    cards[0].created_at -= eight_days;
    cards[0].updated_at -= eight_days;
    // The same cards, u0's sent eight days ago, in the store of a deployment that finishes them.
    let mut h = Harness::new(config(Some(&fake.url), "")).await;
    let event = Event {
        source: "hap".into(),
        key: "t-old".into(),
        kind: "todo".into(),
        received_at: cards[0].created_at,
        payload: json!({}),
        raw: todo("t-old", 2),
    };
    h.app.store.insert(&event, &cards).await.unwrap();

    assert_eq!(
        h.post("/hap/todo", &finish("t-old", None)).await.status,
        200
    );
    assert_eq!(h.drain().await, vec![Status::Sent]);
    let bars = fake.calls(BAR);
    assert_eq!(bars.len(), 1, "only the fresh card is called for");
    assert_eq!(bars[0].body["task_id"], task_id(&cards[1]));
    let update = h.deliveries("EVT#hap#done#t-old#*").await.remove(0);
    assert_eq!(
        update.result.unwrap()["too_old_task_ids"],
        json!([task_id(&cards[0])])
    );

    assert_eq!(
        h.post("/hap/todo", &finish("t-old", Some("u0")))
            .await
            .status,
        200
    );
    assert_eq!(h.drain().await, vec![Status::Dead]);
    assert_eq!(fake.calls(BAR).len(), 1, "no call for a card too old");
    let dead = h.deliveries("EVT#hap#done#t-old#u0").await.remove(0);
    assert!(
        dead.last_error.unwrap().contains("within 7 days"),
        "the reason says why"
    );
}

// ---- follow-ups: errcode 0 is not "delivered" ----

const PROGRESS: &str = "getsendprogress";
const RESULT: &str = "getsendresult";

/// The one delivery of an event.
async fn only(h: &Harness, pk: &str) -> Delivery {
    let mut all = h.deliveries(pk).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[tokio::test]
async fn a_send_nobody_got_is_undelivered_with_who_and_why() {
    let (fake, mut h) = live("follow_up = \"failures\"").await;
    fake.set_daily_cap(0);
    assert_eq!(
        h.post("/hap/message", &notice("n-cap", 2)).await.status,
        200
    );
    assert_eq!(h.drain().await, [Status::Checking], "sent, to be checked");
    assert_eq!(fake.count(RESULT), 0, "no follow-up before its delay");
    assert_eq!(h.sweep_after(30).await, [], "not due after 30 s");
    assert_eq!(h.sweep_after(61).await, [Status::Undelivered]);
    assert_eq!((fake.count(SEND), fake.count(RESULT)), (1, 1));
    let d = only(&h, "EVT#hap#n-cap").await;
    assert_eq!(d.attempts, 1, "the check is no attempt");
    let reason = d.last_error.unwrap();
    assert!(
        reason.contains("nobody got it")
            && reason.contains("u0 (forbidden 143105: the person's daily cap"),
        "{reason}"
    );
    assert_eq!(
        d.result.as_ref().unwrap()["task_id"],
        fake.tasks()[0].task_id,
        "the task id stays for recall"
    );
    assert_eq!(h.sweep_after(3600).await, [], "undelivered is final");
}

#[tokio::test]
async fn a_send_someone_got_is_sent_with_every_outcome_recorded() {
    let (fake, mut h) = live("follow_up = \"failures\"").await;
    fake.set_invalid_users(&["u1"]);
    assert_eq!(
        h.post("/hap/message", &notice("n-inv", 3)).await.status,
        200
    );
    assert_eq!(h.drain().await, [Status::Checking]);
    let task = fake.tasks()[0].task_id;
    fake.mark_read(task, "u2");
    assert_eq!(h.sweep_after(61).await, [Status::Sent]);
    let d = only(&h, "EVT#hap#n-inv").await;
    assert_eq!(
        d.result.unwrap()["outcomes"],
        json!({"u0": "unread", "u1": "invalid userid", "u2": "read"})
    );
    assert_eq!(d.last_error, None);

    // The same content to the same people the same day: DingTalk drops it (143106).
    let again = h.app.store.deliveries_of("EVT#hap#n-inv").await.unwrap();
    let mut h2 = Harness::new(config(Some(&fake.url), "follow_up = \"failures\"")).await;
    let event = hookbridge::event::Event {
        source: "hap".into(),
        key: "n-inv".into(),
        kind: "notice".into(),
        received_at: 0,
        payload: json!({}),
        raw: String::new(),
    };
    let mut resend = again[0].clone();
    (resend.status, resend.result, resend.attempts) = (Status::Pending, None, 0);
    h2.app
        .store
        .insert(&event, &[resend.clone()])
        .await
        .unwrap();
    h2.app.sender.process(&resend.key()).await.unwrap();
    assert_eq!(h2.sweep_after(61).await, [Status::Undelivered]);
    let d = only(&h2, "EVT#hap#n-inv").await;
    assert!(
        d.last_error.unwrap().contains("143106: the same content"),
        "the duplicate is named"
    );
}

#[tokio::test]
async fn full_follow_up_polls_progress_until_done_then_reads_the_result() {
    let (fake, mut h) = live("follow_up = \"full\"\nfollow_up_delay_secs = 10").await;
    fake.set_progress_running(2);
    assert_eq!(
        h.post("/hap/message", &notice("n-full", 1)).await.status,
        200
    );
    assert_eq!(h.drain().await, [Status::Checking]);
    assert_eq!(h.sweep_after(11).await, [Status::Checking], "running");
    assert_eq!(h.sweep_after(15).await, [], "the second poll waits longer");
    assert_eq!(h.sweep_after(21).await, [Status::Checking], "running");
    assert_eq!(h.sweep_after(41).await, [Status::Sent], "done, then read");
    assert_eq!((fake.count(PROGRESS), fake.count(RESULT)), (3, 1));
    let d = only(&h, "EVT#hap#n-full").await;
    let result = d.result.unwrap();
    assert_eq!(result["progress"]["status"], 2);
    assert_eq!(result["outcomes"], json!({"u0": "unread"}));
}

#[tokio::test]
async fn a_follow_up_that_keeps_failing_leaves_the_send_sent() {
    let (fake, mut h) = live("follow_up = \"failures\"").await;
    assert_eq!(
        h.post("/hap/message", &notice("n-500", 1)).await.status,
        200
    );
    assert_eq!(h.drain().await, [Status::Checking]);
    fake.inject(
        "/topapi/message/corpconversation/getsendresult",
        200,
        r#"{"errcode":500,"errmsg":"系统异常"}"#,
        3,
    );
    assert_eq!(h.sweep_after(61).await, [Status::Checking], "tried again");
    assert_eq!(h.sweep_after(122).await, [Status::Checking]);
    assert_eq!(h.sweep_after(183).await, [Status::Sent]);
    assert_eq!(
        (fake.count(SEND), fake.count(RESULT)),
        (1, 3),
        "never resent"
    );
    let d = only(&h, "EVT#hap#n-500").await;
    assert!(
        d.result.unwrap()["not_checked"]
            .as_str()
            .unwrap()
            .contains("500")
    );
}

#[tokio::test]
async fn follow_ups_stop_at_80_percent_of_the_monthly_quota() {
    // A quota of 5 calls: two sends, each counted with its check, reach 80 %.
    let (fake, mut h) = live("follow_up = \"failures\"\nmonthly_quota = 5").await;
    for (q, want) in [("q1", 2), ("q2", 4)] {
        assert_eq!(h.post("/hap/message", &notice(q, 1)).await.status, 200);
        assert_eq!(h.drain().await, [Status::Checking]);
        // The check's call is counted with its send (one write), before it is made.
        assert_eq!(h.calls_counted("dingtalk#ding-fake-key", want).await, want);
        assert_eq!(h.sweep_after(61).await, [Status::Sent]);
    }
    assert_eq!(h.post("/hap/message", &notice("q3", 1)).await.status, 200);
    assert_eq!(h.drain().await, [Status::Sent], "no follow-up any more");
    assert_eq!((fake.count(SEND), fake.count(RESULT)), (3, 2));
    // Every call made counted once: the checks with their sends, the last send alone.
    assert_eq!(h.calls_counted("dingtalk#ding-fake-key", 5).await, 5);
}

#[tokio::test]
async fn a_card_being_checked_still_flips_when_the_todo_is_finished() {
    let (fake, mut h) = live("follow_up = \"failures\"").await;
    assert_eq!(h.post("/hap/message", &todo("t-chk", 2)).await.status, 200);
    assert_eq!(h.drain().await, [Status::Checking; 2]);
    h.post("/hap/todo", &finish("t-chk", Some("u1"))).await;
    assert_eq!(h.drain().await, [Status::Sent], "no wait for the check");
    assert_eq!(status_of(&fake, "u1"), [Some("已处理".to_owned())]);
    assert_eq!(h.sweep_after(61).await, [Status::Sent, Status::Sent]);
    assert_eq!(fake.count(SEND), 2, "checked, never resent");
}

#[tokio::test]
async fn a_route_to_everyone_and_to_departments_at_once_is_refused() {
    use hookbridge::app::{App, Parts};
    use hookbridge::setup::Secrets;
    let text = hookbridge_tests::config_text(None, "")
        + "\n[[routes]]\nsource = \"hap\"\nconnector = \"dingtalk\"\nto_all_user = true\ndepartments = [\"1\"]\n";
    let config = hookbridge::config::Config::from_toml(&text).unwrap();
    let store = Arc::new(MemoryStore::new());
    let Err(e) = App::build(config, store, &Secrets::default(), Parts::All).await else {
        panic!("built")
    };
    assert!(
        e.to_string()
            .contains("routes[1]: choose `to_all_user` or `departments`, not both"),
        "{e}"
    );
}

/// What a 100-recipient to-do costs in DingTalk API calls, per follow-up setting: 20 cards of
/// 5 (a status bar shows for at most 5), plus one `getsendresult` each with `failures`, plus
/// one `getsendprogress` each (DingTalk done at the first poll) with `full`. The token is one
/// `gettoken` for the whole run.
#[tokio::test]
async fn a_100_recipient_todo_costs_20_sends_and_one_or_two_follow_ups_each() {
    for (follow_up, per_card) in [("off", 1), ("failures", 2), ("full", 3)] {
        let (fake, mut h) = live(&format!("follow_up = \"{follow_up}\"")).await;
        assert_eq!(h.post("/hap/message", &todo("t100", 100)).await.status, 200);
        h.drain().await;
        h.sweep_until(&[Status::Sent; 20], 61, 3).await;
        let calls = [SEND, PROGRESS, RESULT, BAR]
            .iter()
            .map(|p| fake.count(p))
            .sum::<usize>();
        assert_eq!(
            (fake.count(SEND), calls, fake.count(TOKEN)),
            (20, 20 * per_card, 1),
            "follow_up = {follow_up}"
        );
        let cards = h.deliveries("EVT#hap#t100").await;
        assert!(
            cards.iter().all(|c| c.status == Status::Sent),
            "{follow_up}"
        );
    }
}

/// A to-do sent as an action card has no status bar to flip: with `recall_on_finish` its route
/// takes it back when HAP reports it finished (a routed `Revoke`), within DingTalk's 24 hours.
#[tokio::test]
async fn a_finished_todo_is_recalled_when_its_route_says_so() {
    let fake = FakeDingTalk::start().await;
    let text = hookbridge_tests::config_text(
        Some(&fake.url),
        "\n[templates.card]\ntitle = \"{{ appName }}\"\ntext = \"{{ message }}\"\nmsgtype = \"action_card\"\n",
    )
    .replacen(
        "connector = \"dingtalk\"\n",
        "connector = \"dingtalk\"\nrecall_on_finish = true\ntemplate = \"card\"\n",
        1,
    );
    let config = hookbridge::config::Config::from_toml(&text).unwrap();
    let mut h = Harness::new(config.clone()).await;
    assert_eq!(h.post("/hap/message", &todo("t-rc", 2)).await.status, 200);
    assert_eq!(h.drain().await, [Status::Sent], "one action card to both");
    assert_eq!(fake.tasks()[0].msgtype, "action_card");
    h.post("/hap/todo", &finish("t-rc", Some("u1"))).await;
    assert_eq!(h.drain().await, [Status::Sent]);
    assert!(fake.tasks()[0].recalled, "taken back");
    assert_eq!((fake.count(BAR), fake.count("recall")), (0, 1));
    let revoke = h.deliveries("EVT#hap#done#t-rc#u1").await.remove(0);
    assert_eq!(
        revoke.result.unwrap()["recalled"][0]["delivery"],
        "DLV#dingtalk#000"
    );

    // The same, sent more than a day ago: refused without a call, and the reason kept.
    let mut old = h.deliveries("EVT#hap#t-rc").await;
    old[0].updated_at -= 25 * 3_600_000;
    let mut later = Harness::new(config).await;
    let event = hookbridge::event::Event {
        source: "hap".into(),
        key: "t-rc".into(),
        kind: "todo".into(),
        received_at: old[0].created_at,
        payload: json!({}),
        raw: todo("t-rc", 2),
    };
    later.app.store.insert(&event, &old).await.unwrap();
    later.post("/hap/todo", &finish("t-rc", None)).await;
    assert_eq!(later.drain().await, [Status::Dead]);
    assert_eq!(
        fake.count("recall"),
        1,
        "no call for a message older than 24 h"
    );
    let dead = later.deliveries("EVT#hap#done#t-rc#*").await.remove(0);
    assert!(
        dead.last_error.unwrap().contains("within 24 h"),
        "the reason says why"
    );
}

/// A route's `follow_up` wins over the connector's, rides with the stored request, and never
/// goes out to DingTalk.
#[tokio::test]
async fn a_route_chooses_its_own_follow_up() {
    let fake = FakeDingTalk::start().await;
    for (connector, route, after_send) in [
        ("failures", "off", Status::Sent),
        ("off", "full", Status::Checking),
    ] {
        let text =
            hookbridge_tests::config_text(Some(&fake.url), &format!("follow_up = \"{connector}\""))
                .replacen(
                    "connector = \"dingtalk\"\n",
                    &format!("connector = \"dingtalk\"\nfollow_up = \"{route}\"\n"),
                    1,
                );
        let mut h = Harness::new(hookbridge::config::Config::from_toml(&text).unwrap()).await;
        let id = format!("n-route-{route}");
        assert_eq!(h.post("/hap/message", &notice(&id, 1)).await.status, 200);
        assert_eq!(h.drain().await, [after_send], "route says {route}");
        let stored = only(&h, &format!("EVT#hap#{id}")).await;
        assert_eq!(stored.message["follow_up"], route);
    }
    assert!(
        fake.calls(SEND)
            .iter()
            .all(|c| c.body.get("follow_up").is_none()),
        "the setting is not sent"
    );
}

/// DingTalk's monthly quota used up (90020): the send is dead at once, saying so, not retried.
#[tokio::test]
async fn a_send_over_the_organisations_quota_is_dead_with_the_reason() {
    let (fake, mut h) = live("").await;
    fake.set_monthly_quota(1);
    assert_eq!(h.post("/hap/message", &notice("q-ok", 1)).await.status, 200);
    assert_eq!(h.drain().await, [Status::Sent]);
    assert_eq!(
        h.post("/hap/message", &notice("q-over", 1)).await.status,
        200
    );
    assert_eq!(h.drain().await, [Status::Dead]);
    let d = only(&h, "EVT#hap#q-over").await;
    let reason = d.last_error.unwrap();
    assert!(
        reason.contains("90020") && reason.contains("monthly API quota is used up"),
        "{reason}"
    );
    assert_eq!(h.sweep_after(3600).await, [], "dead is not retried");
}
