//! What DynamoDB bills: DynamoDB Local behind the meter, which asks every call for its consumed
//! capacity. A delivery's state is written on every claim and outcome, so it must stay small
//! whatever the message; what it sends is written once.

use std::sync::Arc;
use std::time::Duration;

use hookbridge::event::{Status, now_ms};
use hookbridge::store::dynamodb::DynamoStore;
use hookbridge::store::dynamodb::sdk::types::AttributeValue;
use hookbridge::store::{DeliveryStore, Due, EventStore, HistoryStore};
use hookbridge_tests::fake_zentao::{FakeZenTao, hap_route};
use hookbridge_tests::meter::Meter;
use hookbridge_tests::{HAP_TOKEN, app_on, config, dynamo_client, dynamodb_endpoint, request};
use serde_json::json;

async fn metered_store(meter: &Meter) -> DynamoStore {
    let table = format!("hookbridge-test-{:016x}", fastrand::u64(..));
    DynamoStore::create_table(&dynamo_client(&dynamodb_endpoint()), &table)
        .await
        .unwrap();
    DynamoStore::new(
        dynamo_client(&meter.url),
        table,
        Duration::from_secs(86_400),
    )
}

/// A HAP message to one person, about `kb` kilobytes of text that does not compress away
/// (CJK characters drawn at random, 3 bytes each).
fn message(id: &str, kb: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(kb as u64);
    let text: String = (0..kb * 1024 / 3)
        .map(|_| char::from_u32(rng.u32(0x4E00..0x9FA6)).unwrap_or('通'))
        .collect();
    json!({
        "messageId": id,
        "message": text,
        "messageTypeV2": 11,
        "appName": "容量",
        "targets": ["manager4220"],
    })
    .to_string()
}

/// HAP → ZenTao (and the default dry-run DingTalk) on a metered table.
async fn zentao_app() -> (Meter, DynamoStore, FakeZenTao, Arc<hookbridge::app::App>) {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let zentao = FakeZenTao::start().await;
    let extra = format!(
        "{}\n[recipients.zentao.map]\nmanager4220 = \"zhangsan\"\n",
        hap_route(&zentao.url)
    );
    let app = app_on(config(None, &extra), Arc::new(store.clone())).await;
    (meter, store, zentao, app)
}

/// Sends a HAP message of `kb` KB to ZenTao; returns the write units of the ingress and of the
/// send.
async fn send(kb: usize) -> (f64, f64) {
    let (meter, store, zentao, app) = zentao_app().await;
    let post = async || {
        let before = meter.consumed();
        let answer = app
            .ingress
            .handle(
                request("/hap/message", message("cap-1", kb), Some(HAP_TOKEN)),
                now_ms(),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        meter.consumed().since(&before)
    };

    let mut ingress = post().await;
    // Is the event there, with its states? One query. Then the event if new, holding the
    // requests (or after a batch of their own items when they do not fit in one read unit),
    // then the two states (DingTalk's, ZenTao's), each if new.
    let batched = ingress.calls.remove("BatchWriteItem").unwrap_or(0);
    assert_eq!(
        ingress.calls,
        [("PutItem".to_owned(), 3), ("Query".to_owned(), 1)].into(),
        "{ingress:?}"
    );
    assert!(batched <= 1, "{ingress:?}");
    // A retry of the webhook is found by that query and writes nothing.
    let duplicate = post().await;
    assert_eq!(
        (duplicate.calls.clone(), duplicate.write_units),
        ([("Query".to_owned(), 1)].into(), 0.0)
    );

    let pk = "EVT#hap#cap-1";
    let delivery = store
        .deliveries_of(pk)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.connector == "zentao")
        .unwrap();
    assert!(delivery.message.to_string().len() > kb * 1000);
    let before = meter.consumed();
    let status = app.sender.process(&delivery.key()).await.unwrap();
    assert_eq!(status, Some(Status::Sent));
    let sent = meter.consumed().since(&before);
    assert_eq!(sent.calls["UpdateItem"], 2, "claim and outcome: {sent:?}");
    assert_eq!(sent.calls["GetItem"], 1, "the request, read once: {sent:?}");
    assert_eq!(zentao.calls("sendNotification").len(), 1);
    let stored = store.delivery(&delivery.key()).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.message),
        (Status::Sent, delivery.message)
    );
    (ingress.write_units, sent.write_units)
}

#[tokio::test]
async fn sending_costs_three_write_units_whatever_the_message_size() {
    let (small_in, small) = send(0).await;
    let (large_in, large) = send(3).await;
    // The claim, one unit for the state item and one for the sweeper's index entry, and the
    // outcome, one unit (the entry stays, passed over by the sweep): the 3 KB request is not
    // rewritten.
    assert_eq!((small, large), (3.0, 3.0));
    // The text is written once, at the ingress, and billed by its size there: deflated with
    // the body it came from, not once more for each of the two deliveries that send it.
    assert!(
        (small_in + 1.0..small_in + 3.0).contains(&large_in),
        "{small_in} → {large_in}"
    );
}

/// What a HAP to-do for one person costs at the webhook: its DingTalk card (over a kilobyte of
/// JSON) is deflated with the body it came from into the event, one write unit, and the
/// state is the other.
#[tokio::test]
async fn a_todo_card_for_one_person_is_two_write_units_at_the_webhook() {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let app = app_on(config(None, ""), Arc::new(store.clone())).await;
    let mut todo: serde_json::Value =
        serde_json::from_str(&hookbridge_tests::fixture("hap-message-todo.json")).unwrap();
    todo["targets"] = json!(["manager4220"]);
    let body = todo.to_string();
    let at = now_ms();
    let before = meter.consumed();
    let answer = app
        .ingress
        .handle(request("/hap/message", body.clone(), Some(HAP_TOKEN)), at)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let spent = meter.consumed().since(&before);

    let rendered = app
        .ingress
        .preview(Some("/hap/message"), body.as_bytes(), at)
        .unwrap()
        .1;
    assert_eq!(rendered.len(), 1);
    // Stored as text, with its keys, ttl and attribute names (at least 60 bytes), the item
    // would be over 1 KB: two write units.
    let pk = todo_pk(&todo);
    let text = serde_json::to_string(&(&rendered[0].recipients, &rendered[0].message)).unwrap();
    assert!(
        text.len() + pk.len() + 60 > 1024,
        "the test needs a larger card: {}",
        text.len()
    );
    assert_eq!(spent.writes["PutItem EVT"], (1, 1.0), "{spent:?}");
    assert_eq!(spent.write_units, 2.0, "{spent:?}");
    // Read back as it was rendered.
    let stored = store.deliveries_of(&pk).await.unwrap();
    assert_eq!(
        (&stored[0].recipients, &stored[0].message),
        (&rendered[0].recipients, &rendered[0].message)
    );
}

/// HAP's to-do for `targets` through the default config on a metered table, `hold` set on
/// the meter first (calls held until two meet, see [`Meter::hold_together`]): the meter, the
/// store and the event's key.
async fn post_todo(targets: serde_json::Value, hold: &[&str]) -> (Meter, DynamoStore, String) {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let app = app_on(config(None, ""), Arc::new(store.clone())).await;
    let mut todo: serde_json::Value =
        serde_json::from_str(&hookbridge_tests::fixture("hap-message-todo.json")).unwrap();
    todo["targets"] = targets;
    meter.hold_together(hold, 2);
    let answer = app
        .ingress
        .handle(
            request("/hap/message", todo.to_string(), Some(HAP_TOKEN)),
            now_ms(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    (meter, store, todo_pk(&todo))
}

/// A webhook answers one round trip after its event is stored, however many people it goes
/// to: the states' conditional puts go out together (the meter holds each until the other
/// comes, and would let one alone through only after 2 s).
#[tokio::test]
async fn an_events_states_are_written_together() {
    let (meter, store, pk) = post_todo(json!(["manager4220", "lisi"]), &["PutItem DLV"]).await;
    assert_eq!(
        meter.most_at_once(),
        2,
        "the two states' puts went out together"
    );
    assert_eq!(store.deliveries_of(&pk).await.unwrap().len(), 2);
}

/// The events of one request (an Alertmanager group of two alerts) are stored side by side.
#[tokio::test]
async fn a_groups_events_are_stored_together() {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let extra = "[sources.alertmanager]\nbearer_tokens = [\"plain:am-token\"]\n\
                 [[routes]]\nsource = \"alertmanager\"\nconnector = \"dingtalk\"\nusers = [\"ops1\"]\n";
    let app = app_on(config(None, extra), Arc::new(store.clone())).await;
    let mut req = request(
        "/alertmanager",
        hookbridge_tests::alerts_now("alertmanager-firing.json"),
        None,
    );
    req.headers
        .insert("authorization", "Bearer am-token".parse().unwrap());
    meter.hold_together(&["PutItem EVT"], 2);
    let answer = app.ingress.handle(req, now_ms()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The alerts' two events and the group's own, which says what the group holds.
    assert!(answer.body.contains("\"events\":3"), "{}", answer.body);
    assert!(meter.most_at_once() >= 2, "the events went out together");
}

/// A claim reads the event, where the request is, alongside its own write: a send waits one
/// round trip less before its call.
#[tokio::test]
async fn a_claim_reads_the_request_alongside() {
    let (meter, store, pk) = post_todo(json!(["manager4220"]), &[]).await;
    let stored = store.deliveries_of(&pk).await.unwrap();
    meter.hold_together(&["UpdateItem DLV", "GetItem EVT"], 2);
    let now = now_ms();
    let claimed = store
        .claim(&stored[0].key(), now, now + 60_000)
        .await
        .unwrap()
        .expect("pending, so claimed");
    assert_eq!(
        meter.most_at_once(),
        2,
        "the claim and the read went out together"
    );
    assert_eq!(
        (claimed.status, &claimed.message),
        (Status::Sending, &stored[0].message)
    );
}

fn todo_pk(todo: &serde_json::Value) -> String {
    format!("EVT#hap#{}", todo["messageId"].as_str().unwrap())
}

/// Items written by earlier versions are still read: a stack updated with deliveries in
/// flight sends them as rendered. A request item of its own with `recipients` and `message`
/// as they are (before requests were deflated), and an event with its body in `raw` (before
/// it was packed with the requests).
#[tokio::test]
async fn items_of_the_earlier_layouts_are_read_as_they_are() {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let app = app_on(config(None, ""), Arc::new(store.clone())).await;
    let answer = app
        .ingress
        .handle(
            request("/hap/message", message("cap-5", 1), Some(HAP_TOKEN)),
            now_ms(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let d = store
        .deliveries_of("EVT#hap#cap-5")
        .await
        .unwrap()
        .remove(0);
    let client = dynamo_client(&dynamodb_endpoint());
    let state = client
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(d.pk.clone()))
        .key("sk", AttributeValue::S(d.sk.clone()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let request_sk = "REQ#dingtalk#0#0123456789abcdef";
    let mut state = state;
    state.insert("request".into(), AttributeValue::S(request_sk.into()));
    client
        .put_item()
        .table_name(store.table())
        .set_item(Some(state))
        .send()
        .await
        .unwrap();
    client
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(d.pk.clone()))
        .item("sk", AttributeValue::S(request_sk.into()))
        .item(
            "recipients",
            AttributeValue::L(
                d.recipients
                    .iter()
                    .map(|r| AttributeValue::S(r.clone()))
                    .collect(),
            ),
        )
        .item("message", AttributeValue::S(d.message.to_string()))
        .item("ttl", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let again = store.delivery(&d.key()).await.unwrap().unwrap();
    assert_eq!((again.recipients, again.message), (d.recipients, d.message));

    let raw = r#"{"messageId":"cap-6"}"#;
    client
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("EVT#hap#cap-6".into()))
        .item("sk", AttributeValue::S("EVT".into()))
        .item("source", AttributeValue::S("hap".into()))
        .item("key", AttributeValue::S("cap-6".into()))
        .item("kind", AttributeValue::S("message".into()))
        .item("received_at", AttributeValue::N("1".into()))
        .item("raw", AttributeValue::S(raw.into()))
        .item("ttl", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let event = store.event("EVT#hap#cap-6").await.unwrap().unwrap();
    assert_eq!((event.key.as_str(), event.raw.as_str()), ("cap-6", raw));
}

/// An insert cut short after its event and one of its states (the function timed out, the
/// store went away) was not acknowledged; the source's retry is, and writes the missing state
/// as the first arrival rendered it, and leaves the one the sender may already have sent.
#[tokio::test]
async fn a_retry_after_an_insert_cut_short_writes_the_missing_states_and_leaves_the_others() {
    let (_meter, store, zentao, app) = zentao_app().await;
    let body = message("cap-3", 0);
    let post = |at| {
        app.ingress
            .handle(request("/hap/message", body.clone(), Some(HAP_TOKEN)), at)
    };
    let first = now_ms();
    assert_eq!(post(first).await.status, 200);
    let pk = "EVT#hap#cap-3";
    let of = |all: Vec<hookbridge::event::Delivery>, connector: &str| {
        all.into_iter().find(|d| d.connector == connector)
    };
    let stored = store.deliveries_of(pk).await.unwrap();
    let (d, dingtalk) = (
        of(stored.clone(), "zentao").unwrap(),
        of(stored, "dingtalk").unwrap(),
    );
    dynamo_client(&dynamodb_endpoint())
        .delete_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(dingtalk.sk.clone()))
        .send()
        .await
        .unwrap();
    assert!(
        of(store.deliveries_of(pk).await.unwrap(), "dingtalk").is_none(),
        "cut short"
    );
    assert_eq!(
        app.sender.process(&d.key()).await.unwrap(),
        Some(Status::Sent)
    );

    let later = first + 3_600_000;
    assert_eq!(post(later).await.status, 200, "the retry is acknowledged");
    let after = store.deliveries_of(pk).await.unwrap();
    let restored = of(after.clone(), "dingtalk").expect("the missing state written");
    assert_eq!(
        (restored.status, &restored.message),
        (Status::Pending, &dingtalk.message),
        "as first rendered"
    );
    let rerendered = app
        .ingress
        .preview(Some("/hap/message"), body.as_bytes(), later)
        .unwrap()
        .1;
    assert!(
        rerendered.iter().all(|r| r.message != dingtalk.message),
        "the test needs renderings that differ by time"
    );
    let zentao_after = of(after, "zentao").unwrap();
    assert_eq!(
        (zentao_after.status, zentao_after.attempts),
        (Status::Sent, 1),
        "not sent again"
    );
    assert_eq!(zentao.calls("sendNotification").len(), 1);
}

/// A retried webhook rendered at another time must not change what the first one's delivery
/// sends.
#[tokio::test]
async fn a_duplicate_rendered_differently_leaves_the_pending_delivery_as_it_was() {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let app = app_on(config(None, ""), Arc::new(store.clone())).await;
    let body = message("cap-2", 1);
    let first = now_ms();
    for at in [first, first + 3_600_000] {
        let answer = app
            .ingress
            .handle(request("/hap/message", body.clone(), Some(HAP_TOKEN)), at)
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let stored = store.deliveries_of("EVT#hap#cap-2").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, Status::Pending);
    assert_eq!(stored[0].created_at, first);
    // Rendered as at the first arrival (HAP gave no time: the message shows when it came).
    let again = app
        .ingress
        .preview(Some("/hap/message"), body.as_bytes(), first)
        .unwrap()
        .1;
    assert_eq!(stored[0].message, again[0].message);
    let later = app
        .ingress
        .preview(Some("/hap/message"), body.as_bytes(), first + 3_600_000)
        .unwrap()
        .1;
    assert_ne!(
        later[0].message, again[0].message,
        "the test needs renderings that differ by time"
    );
}

/// A HAP message `id` to one person stored at `at` on a metered table, for DingTalk with its
/// sends followed up: the meter, the table, the fake DingTalk, the app and the delivery.
async fn followed_up(
    id: &str,
    at: hookbridge::event::Millis,
) -> (
    Meter,
    DynamoStore,
    hookbridge_tests::fake_dingtalk::FakeDingTalk,
    Arc<hookbridge::app::App>,
    hookbridge::event::DeliveryKey,
) {
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let dingtalk = hookbridge_tests::fake_dingtalk::FakeDingTalk::start().await;
    let app = app_on(
        config(Some(&dingtalk.url), "follow_up = \"failures\"\n"),
        Arc::new(store.clone()),
    )
    .await;
    let answer = app
        .ingress
        .handle(request("/hap/message", message(id, 0), Some(HAP_TOKEN)), at)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let key = store.deliveries_of(&format!("EVT#hap#{id}")).await.unwrap()[0].key();
    (meter, store, dingtalk, app, key)
}

/// A DingTalk send to be followed up keeps the index entry its claim made: its outcome is one
/// write of the state, and the sweeper finds it when the claim lapses (five minutes with the
/// defaults), not at the follow-up's own time (a minute); operators find it as `checking`.
#[tokio::test]
async fn a_send_to_be_followed_up_keeps_its_claims_index_entry() {
    use hookbridge::event::DeliveryFilter;
    let sent_at = now_ms();
    let (meter, store, _dingtalk, app, key) = followed_up("cap-6", sent_at).await;
    let before = meter.consumed();
    assert_eq!(
        app.sender.process(&key).await.unwrap(),
        Some(Status::Checking)
    );
    let spent = meter.consumed().since(&before);
    // The claim: the state and its new index entry; the outcome: the state alone.
    assert_eq!(spent.writes["UpdateItem DLV"], (2, 3.0), "{spent:?}");

    let checking = DeliveryFilter {
        status: Some(Status::Checking),
        ..Default::default()
    };
    assert_eq!(store.list(&checking, 10).await.unwrap().len(), 1);
    let sending = DeliveryFilter {
        status: Some(Status::Sending),
        ..Default::default()
    };
    assert!(store.list(&sending, 10).await.unwrap().is_empty());
    assert!(store.due(sent_at + 120_000, 10).await.unwrap().is_empty());
    assert_eq!(
        store.due(sent_at + 301_000, 10).await.unwrap(),
        [Due {
            key: key.clone(),
            status: Status::Checking
        }]
    );
    // Back to pending, one write: the entry stays, and the sweep passes over it from now on.
    let before = meter.consumed();
    assert!(store.requeue(&key, sent_at + 301_000).await.unwrap());
    let spent = meter.consumed().since(&before);
    assert_eq!(spent.writes["UpdateItem DLV"], (1, 1.0), "{spent:?}");
    assert_eq!(
        app.sender.follow_up(&key).await.unwrap(),
        Some(Status::Sent)
    );
    assert!(store.due(sent_at + 900_000, 10).await.unwrap().is_empty());
    assert!(store.list(&checking, 10).await.unwrap().is_empty());
}

/// On Lambda the sweeper hands a due follow-up to DingTalk's sender function (an asynchronous
/// Invoke with its key) instead of re-queueing it: the sweep writes nothing for it, and the
/// follow-up is its sender's one write.
#[tokio::test]
async fn a_follow_up_handed_to_the_sender_function_is_one_write() {
    use hookbridge_tests::fake_lambda::FakeLambda;
    use lambda_runtime::{Context, LambdaEvent};
    let meter = Meter::start(&dynamodb_endpoint()).await;
    let store = metered_store(&meter).await;
    let dingtalk = hookbridge_tests::fake_dingtalk::FakeDingTalk::start().await;
    // Due at once, on its claim's entry (lapsing a second after the claim).
    let app = app_on(
        config(
            Some(&dingtalk.url),
            "follow_up = \"failures\"\nfollow_up_delay_secs = 0\n\n[delivery]\nclaim_lease_secs = 1\n",
        ),
        Arc::new(store.clone()),
    )
    .await;
    let answer = app
        .ingress
        .handle(
            request("/hap/message", message("cap-8", 0), Some(HAP_TOKEN)),
            now_ms(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let key = store.deliveries_of("EVT#hap#cap-8").await.unwrap()[0].key();
    assert_eq!(
        app.sender.process(&key).await.unwrap(),
        Some(Status::Checking)
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let lambda = FakeLambda::start(vec![("hb-DingTalkSender".into(), app.clone())]).await;
    let invoke = hookbridge_tests::fake_lambda::sweeper_invoke(&lambda.url, "hb-DingTalkSender");
    let before = meter.consumed();
    let swept = hookbridge::lambda::sweeper(
        &store,
        Some(&invoke),
        LambdaEvent::new(hookbridge_tests::events::schedule(), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(swept, json!({"requeued": 0, "handed_off": 1}));
    assert_eq!(lambda.invoked(), ["hb-DingTalkSender"]);
    assert_eq!(dingtalk.count("getsendresult"), 1);
    assert_eq!(
        store.delivery(&key).await.unwrap().unwrap().status,
        Status::Sent
    );
    let spent = meter.consumed().since(&before);
    // The follow-up's outcome, and nothing else on the delivery: no re-queue.
    assert_eq!(spent.writes["UpdateItem DLV"], (1, 1.0), "{spent:?}");
    assert!(store.due(now_ms() + 600_000, 10).await.unwrap().is_empty());
}

/// The sweep's cursors outlive a sweeper: a cold one starts where the last one wrote them,
/// which is never past a delivery still parked. They are written once they have moved past an
/// entry, never for sweeps that find nothing (an idle month).
#[tokio::test]
async fn a_cold_sweeper_starts_at_the_cursors_written_and_finds_what_was_held_back() {
    let at = now_ms();
    let (meter, store, _dingtalk, app, key) = followed_up("cap-7", at).await;
    let before = meter.consumed();
    // Sweeps of the ten minutes before (nothing is written due before a sweep's time).
    for minute in 0..10 {
        let then = at - 600_000 + minute * 60_000;
        assert!(store.due(then, 10).await.unwrap().is_empty());
    }
    let idle = meter.consumed().since(&before);
    assert!(
        idle.writes.is_empty(),
        "idle sweeps write nothing: {idle:?}"
    );
    // An entry the sweep passes over: a send whose claim lapses before the one cut short.
    let answer = app
        .ingress
        .handle(
            request("/hap/message", message("cap-7b", 0), Some(HAP_TOKEN)),
            at,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sent = store.deliveries_of("EVT#hap#cap-7b").await.unwrap()[0].key();
    let claimed = store.claim(&sent, at, at + 100_000).await.unwrap().unwrap();
    let done = hookbridge::event::Settled {
        status: Status::Sent,
        attempts: claimed.attempts,
        result: Some(json!({"task_id": 1})),
        last_error: None,
        next_attempt_at: None,
    };
    assert!(store.record(&claimed, &done, at).await.unwrap());
    store.claim(&key, at, at + 300_000).await.unwrap().unwrap();
    assert_eq!(
        store.due(at + 301_000, 10).await.unwrap(),
        [Due {
            key: key.clone(),
            status: Status::Sending
        }]
    );
    let cursors = dynamo_client(&dynamodb_endpoint())
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S("SWEEP".into()))
        .key("sk", AttributeValue::S("SWEEP".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the cursors written");
    let Some(AttributeValue::N(sending)) = cursors.get("sending") else {
        panic!("{cursors:?}")
    };
    let sending: i64 = sending.parse().unwrap();
    assert!(
        (at..=at + 300_000).contains(&sending),
        "moved, and not past the lapsed claim: {sending} for {at}"
    );

    let cold = DynamoStore::new(
        dynamo_client(&meter.url),
        store.table(),
        Duration::from_secs(86_400),
    );
    assert_eq!(
        cold.due(at + 302_000, 10).await.unwrap(),
        [Due {
            key: key.clone(),
            status: Status::Sending
        }]
    );
    assert!(cold.requeue(&key, at + 302_000).await.unwrap());
    assert!(cold.due(at + 303_000, 10).await.unwrap().is_empty());
}

/// A sent DingTalk delivery back for its follow-up is not claimed: asking DingTalk what became
/// of a send may happen twice, so the outcome is one conditional write of the small state (no
/// claim, no index entry); its stream record and a second sender at once record it once.
#[tokio::test]
async fn a_follow_up_is_one_write_of_the_state() {
    let (meter, store, _dingtalk, app, key) = followed_up("cap-4", now_ms()).await;
    assert_eq!(
        app.sender.process(&key).await.unwrap(),
        Some(Status::Checking)
    );
    assert!(store.requeue(&key, now_ms() + 120_000).await.unwrap());

    // The stream record of the re-queued state (it has a result) and a second sender at once.
    let item = [("MODIFY", key.pk.as_str(), key.sk.as_str())];
    let record = hookbridge_tests::events::stream_batch(store.table(), &item).await;
    let record = serde_json::from_value(record).unwrap();
    let before = meter.consumed();
    let (a, b) = tokio::join!(
        hookbridge::lambda::stream(
            &app,
            lambda_runtime::LambdaEvent::new(record, lambda_runtime::Context::default())
        ),
        app.sender.follow_up(&key)
    );
    assert!(a.unwrap().batch_item_failures.is_empty());
    assert_eq!(b.unwrap(), Some(Status::Sent));
    let spent = meter.consumed().since(&before);
    let state = spent.writes["UpdateItem DLV"];
    assert_eq!(state.0, 2, "both tried to record: {spent:?}");
    assert_eq!(state.1, 2.0, "one written, one refused: {spent:?}");
    let d = store.delivery(&key).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempts), (Status::Sent, 1), "{d:?}");
    assert!(
        d.result.unwrap()["outcomes"].is_object(),
        "the follow-up's outcome"
    );
    assert_eq!(app.sender.follow_up(&key).await.unwrap(), None, "done");
}
