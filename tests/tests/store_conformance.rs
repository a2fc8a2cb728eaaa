//! One suite, two stores: every behaviour the pipeline relies on, against the in-memory store
//! and against DynamoDB Local (real conditional writes, transactions and the GSI).

use std::sync::Arc;

use hookbridge::event::{
    Action, Delivery, DeliveryFilter, Event, LEFT_BEHIND, Replay, Settled, Status,
};
use hookbridge::store::memory::MemoryStore;
use hookbridge::store::{Due, EventStore, Inserted, Store, TokenRecord};
use serde_json::json;

/// A durable store on a fresh file, with its feed.
fn on_file() -> (
    MemoryStore,
    tokio::sync::mpsc::UnboundedReceiver<hookbridge::event::DeliveryKey>,
    std::path::PathBuf,
) {
    let path = std::env::temp_dir()
        .join(format!(
            "hookbridge-conformance-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ))
        .join("data.redb");
    let (store, feed) = MemoryStore::durable(&path).unwrap();
    (store, feed, path)
}

fn event(key: &str) -> Event {
    Event {
        source: "hap".into(),
        key: key.into(),
        kind: "todo".into(),
        received_at: 1_000,
        payload: json!({"messageId": key, "n": 1.5, "big": 1185599675123i64}),
        raw: format!("{{\"messageId\":\"{key}\"}}"),
    }
}

fn deliveries(e: &Event, n: usize) -> Vec<Delivery> {
    (0..n)
        .map(|i| {
            Delivery::new(
                &e.pk(),
                "dingtalk",
                i,
                Action::Send,
                vec![format!("u{i}")],
                json!({"agent_id": 1185599675, "msg": {"text": "你好"}}),
                1_000,
            )
        })
        .collect()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test] async fn $name() { super::$name(std::sync::Arc::new(hookbridge::store::memory::MemoryStore::new())).await })*
        }
        mod dynamodb {
            $(#[tokio::test] async fn $name() { super::$name(std::sync::Arc::new(hookbridge_tests::dynamo_store().await)).await })*
        }
        mod file {
            $(#[tokio::test] async fn $name() { super::$name(std::sync::Arc::new(super::on_file().0)).await })*
        }
    };
}

conformance!(
    insert_is_once_and_a_duplicate_writes_nothing,
    concurrent_inserts_of_one_event_store_it_once,
    claim_takes_a_pending_delivery_once,
    record_needs_the_current_claim,
    optional_fields_are_set_and_cleared,
    due_lists_retries_and_lapsed_claims,
    only_a_delivery_still_parked_is_ever_due,
    requeue_happens_once,
    recent_is_newest_first,
    token_lease_is_exclusive_until_it_lapses,
    a_released_lease_is_free_at_once,
    dropping_a_token_only_drops_that_token,
    ninety_nine_deliveries_fit_in_one_insert,
    receipts_are_noted_on_the_linked_delivery,
    replay_gives_a_dead_delivery_a_new_budget_once,
    a_sent_delivery_is_recalled_once,
    each_attempt_keeps_its_answer,
    events_are_listed_with_those_that_made_no_delivery,
    list_filters_and_orders_newest_first,
    usage_is_counted_atomically_per_name_and_month,
    pacing_windows_take_their_limit_fleet_wide,
    marks_only_ever_rise_and_each_is_taken_once,
    cached_values_expire_and_can_be_forgotten,
);

/// Deliveries that left a parked status (sent after a claim, sent after a retry) are never
/// due again, whatever their index entries; one cut short is due once its claim lapses, and
/// again at every sweep until it is re-queued.
async fn only_a_delivery_still_parked_is_ever_due(store: Arc<dyn Store>) {
    let e = event("m-parked");
    let ds = deliveries(&e, 3);
    store.insert(&e, &ds).await.unwrap();
    let settle = |c: &Delivery, status, next_attempt_at| Settled {
        status,
        attempts: c.attempts,
        result: None,
        last_error: None,
        next_attempt_at,
    };
    let mut claimed = vec![];
    for d in &ds {
        claimed.push(store.claim(&d.key(), 1_000, 61_000).await.unwrap().unwrap());
    }
    let sent = settle(&claimed[0], Status::Sent, None);
    assert!(store.record(&claimed[0], &sent, 2_000).await.unwrap());
    let retry = settle(&claimed[2], Status::Retrying, Some(30_000));
    assert!(store.record(&claimed[2], &retry, 2_000).await.unwrap());
    assert_eq!(
        store.due(31_000, 10).await.unwrap(),
        [Due {
            key: ds[2].key(),
            status: Status::Retrying
        }]
    );
    assert!(store.requeue(&ds[2].key(), 31_000).await.unwrap());
    let again = store
        .claim(&ds[2].key(), 32_000, 92_000)
        .await
        .unwrap()
        .unwrap();
    let sent = settle(&again, Status::Sent, None);
    assert!(store.record(&again, &sent, 33_000).await.unwrap());

    // Sweeps minutes apart: each may move past what it saw, never past a parked delivery.
    for now in [62_000, 200_000, 400_000] {
        assert_eq!(
            store.due(now, 10).await.unwrap(),
            [Due {
                key: ds[1].key(),
                status: Status::Sending
            }],
            "the claim cut short, at {now}"
        );
    }
    assert!(store.requeue(&ds[1].key(), 400_000).await.unwrap());
    assert!(store.due(600_000, 10).await.unwrap().is_empty());
    // A sweep whose clock is behind the last one's finds nothing due, and is no error.
    assert!(store.due(1_000, 10).await.unwrap().is_empty());
    for status in Status::PARKED {
        let filter = DeliveryFilter {
            status: Some(status),
            ..Default::default()
        };
        assert!(
            store.list(&filter, 10).await.unwrap().is_empty(),
            "{status:?}"
        );
    }
}

async fn insert_is_once_and_a_duplicate_writes_nothing(store: Arc<dyn Store>) {
    let e = event("m1");
    assert_eq!(
        store.insert(&e, &deliveries(&e, 2)).await.unwrap(),
        Inserted::Created
    );
    let again = deliveries(&e, 5);
    assert_eq!(store.insert(&e, &again).await.unwrap(), Inserted::Duplicate);
    let stored = store.deliveries_of(&e.pk()).await.unwrap();
    assert_eq!(stored.len(), 2, "a duplicate writes nothing");
    assert_eq!(
        stored[0],
        deliveries(&e, 1)[0],
        "a delivery reads back exactly as written"
    );
    assert!(
        store
            .deliveries_of("EVT#hap#other")
            .await
            .unwrap()
            .is_empty()
    );
}

/// A source that retries before its first request was answered: the copies race, one is
/// created, the others are duplicates, and the event has its deliveries once.
async fn concurrent_inserts_of_one_event_store_it_once(store: Arc<dyn Store>) {
    let e = event("m-race");
    let racing = (0..8).map(|_| {
        let (store, e) = (store.clone(), e.clone());
        tokio::spawn(async move { store.insert(&e, &deliveries(&e, 3)).await.unwrap() })
    });
    let mut created = 0;
    for r in racing.collect::<Vec<_>>() {
        created += usize::from(r.await.unwrap() == Inserted::Created);
    }
    assert_eq!(created, 1);
    assert_eq!(
        store.deliveries_of(&e.pk()).await.unwrap(),
        deliveries(&e, 3)
    );
}

async fn claim_takes_a_pending_delivery_once(store: Arc<dyn Store>) {
    let e = event("m2");
    let d = deliveries(&e, 1).remove(0);
    store.insert(&e, std::slice::from_ref(&d)).await.unwrap();
    let claimed = store
        .claim(&d.key(), 5_000, 65_000)
        .await
        .unwrap()
        .expect("pending");
    assert_eq!((claimed.status, claimed.attempts), (Status::Sending, 1));
    assert_eq!(claimed.next_attempt_at, Some(65_000));
    assert!(
        store
            .claim(&d.key(), 5_000, 65_000)
            .await
            .unwrap()
            .is_none()
    );
    let missing = hookbridge::event::DeliveryKey {
        pk: e.pk(),
        sk: "DLV#dingtalk#999".into(),
    };
    assert!(
        store
            .claim(&missing, 5_000, 65_000)
            .await
            .unwrap()
            .is_none()
    );
}

async fn record_needs_the_current_claim(store: Arc<dyn Store>) {
    let e = event("m3");
    let d = deliveries(&e, 1).remove(0);
    store.insert(&e, std::slice::from_ref(&d)).await.unwrap();
    let first = store.claim(&d.key(), 1, 10).await.unwrap().unwrap();
    // The claim lapses, the sweeper re-queues it and a second sender claims it.
    assert!(store.requeue(&d.key(), 20).await.unwrap());
    let second = store.claim(&d.key(), 21, 100).await.unwrap().unwrap();
    let sent = Settled {
        status: Status::Sent,
        attempts: second.attempts,
        result: Some(json!({"task_id": 7})),
        last_error: None,
        next_attempt_at: None,
    };
    assert!(
        !store.record(&first, &sent, 30).await.unwrap(),
        "the stale claim cannot record"
    );
    assert!(store.record(&second, &sent, 30).await.unwrap());
    assert!(
        !store.record(&second, &sent, 31).await.unwrap(),
        "recorded once"
    );
    let stored = &store.deliveries_of(&e.pk()).await.unwrap()[0];
    assert_eq!(
        (stored.status, stored.attempts, stored.updated_at),
        (Status::Sent, 2, 30)
    );
    assert_eq!(stored.result, Some(json!({"task_id": 7})));
}

async fn optional_fields_are_set_and_cleared(store: Arc<dyn Store>) {
    let e = event("m4");
    let d = deliveries(&e, 1).remove(0);
    store.insert(&e, std::slice::from_ref(&d)).await.unwrap();
    let c = store.claim(&d.key(), 1, 10).await.unwrap().unwrap();
    let retry = Settled {
        status: Status::Retrying,
        attempts: c.attempts,
        result: None,
        last_error: Some("busy".into()),
        next_attempt_at: Some(50),
    };
    assert!(store.record(&c, &retry, 2).await.unwrap());
    assert!(store.requeue(&d.key(), 60).await.unwrap());
    let c = store.claim(&d.key(), 61, 70).await.unwrap().unwrap();
    assert_eq!((c.last_error.as_deref(), c.attempts), (Some("busy"), 2));
    let sent = Settled {
        status: Status::Sent,
        attempts: c.attempts,
        result: Some(json!({"task_id": 1})),
        last_error: None,
        next_attempt_at: None,
    };
    assert!(store.record(&c, &sent, 62).await.unwrap());
    let stored = &store.deliveries_of(&e.pk()).await.unwrap()[0];
    assert_eq!(
        (stored.last_error.clone(), stored.next_attempt_at),
        (None, None)
    );
}

async fn due_lists_retries_and_lapsed_claims(store: Arc<dyn Store>) {
    let e = event("m5");
    let ds = deliveries(&e, 5);
    store.insert(&e, &ds).await.unwrap();
    // 0: retrying, due at 100. 1: sending, claim lapses at 200. 2: dead. 3: sent, to be
    // checked at 400. 4: waiting, due at 300, its claim not counted as an attempt.
    let c0 = store.claim(&ds[0].key(), 1, 10).await.unwrap().unwrap();
    let retry = Settled {
        status: Status::Retrying,
        attempts: c0.attempts,
        result: None,
        last_error: Some("x".into()),
        next_attempt_at: Some(100),
    };
    store.record(&c0, &retry, 2).await.unwrap();
    store.claim(&ds[1].key(), 1, 200).await.unwrap().unwrap();
    let c2 = store.claim(&ds[2].key(), 1, 10).await.unwrap().unwrap();
    let dead = Settled {
        status: Status::Dead,
        attempts: c2.attempts,
        result: None,
        last_error: Some("no".into()),
        next_attempt_at: None,
    };
    store.record(&c2, &dead, 2).await.unwrap();
    let c4 = store.claim(&ds[4].key(), 1, 10).await.unwrap().unwrap();
    let wait = Settled {
        status: Status::Waiting,
        attempts: c4.attempts - 1,
        result: None,
        last_error: Some("card pending".into()),
        next_attempt_at: Some(300),
    };
    assert!(store.record(&c4, &wait, 2).await.unwrap());
    let c3 = store.claim(&ds[3].key(), 1, 10).await.unwrap().unwrap();
    let check = Settled {
        status: Status::Checking,
        attempts: c3.attempts,
        result: Some(serde_json::json!({"task_id": 42})),
        last_error: None,
        next_attempt_at: Some(400),
    };
    assert!(store.record(&c3, &check, 2).await.unwrap());
    let waiting = store
        .deliveries_of(&e.pk())
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.sk == ds[4].sk)
        .unwrap();
    assert_eq!((waiting.status, waiting.attempts), (Status::Waiting, 0));
    let keys = |v: Vec<Due>| {
        let mut s: Vec<String> = v.into_iter().map(|d| d.key.sk).collect();
        s.sort();
        s
    };
    assert!(store.due(99, 10).await.unwrap().is_empty());
    assert_eq!(
        keys(store.due(100, 10).await.unwrap()),
        ["DLV#dingtalk#000"]
    );
    assert_eq!(
        keys(store.due(299, 10).await.unwrap()),
        ["DLV#dingtalk#000", "DLV#dingtalk#001"]
    );
    assert_eq!(
        keys(store.due(399, 10).await.unwrap()),
        ["DLV#dingtalk#000", "DLV#dingtalk#001", "DLV#dingtalk#004"]
    );
    assert_eq!(
        keys(store.due(500, 10).await.unwrap()),
        [
            "DLV#dingtalk#000",
            "DLV#dingtalk#001",
            "DLV#dingtalk#003",
            "DLV#dingtalk#004"
        ]
    );
    assert_eq!(store.due(500, 1).await.unwrap().len(), 1, "limit holds");
    assert!(
        store.requeue(&ds[4].key(), 500).await.unwrap(),
        "waiting is re-queued"
    );
    assert!(
        store.requeue(&ds[3].key(), 500).await.unwrap(),
        "checking is re-queued"
    );
    let check = store.claim(&ds[3].key(), 501, 600).await.unwrap().unwrap();
    assert!(check.was_sent(), "the send's result is kept for the check");
}

async fn requeue_happens_once(store: Arc<dyn Store>) {
    let e = event("m6");
    let d = deliveries(&e, 1).remove(0);
    store.insert(&e, std::slice::from_ref(&d)).await.unwrap();
    let c = store.claim(&d.key(), 1, 10).await.unwrap().unwrap();
    let retry = Settled {
        status: Status::Retrying,
        attempts: c.attempts,
        result: None,
        last_error: None,
        next_attempt_at: Some(100),
    };
    store.record(&c, &retry, 2).await.unwrap();
    assert!(!store.requeue(&d.key(), 99).await.unwrap(), "not due yet");
    let key = d.key();
    let (a, b) = tokio::join!(store.requeue(&key, 100), store.requeue(&key, 100));
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|x| **x).count(), 1);
    assert!(
        store.due(1_000, 10).await.unwrap().is_empty(),
        "pending is not in the due index"
    );
    assert!(store.claim(&d.key(), 101, 200).await.unwrap().is_some());
}

async fn recent_is_newest_first(store: Arc<dyn Store>) {
    let e = event("m7");
    let ds = deliveries(&e, 3);
    store.insert(&e, &ds).await.unwrap();
    let c = store
        .claim(&ds[1].key(), 5_000, 6_000)
        .await
        .unwrap()
        .unwrap();
    let recent = store.recent(2).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].key(), c.key());
}

async fn token_lease_is_exclusive_until_it_lapses(store: Arc<dyn Store>) {
    assert_eq!(store.token("dingtalk#k").await.unwrap(), None);
    assert!(store.lease("dingtalk#k", "a", 0, 100).await.unwrap());
    assert!(!store.lease("dingtalk#k", "b", 50, 150).await.unwrap());
    assert!(
        store.lease("dingtalk#k", "b", 100, 200).await.unwrap(),
        "a lapsed lease can be taken"
    );
    let t = TokenRecord {
        access_token: "tok".into(),
        refresh_at: 1_000,
        expires_at: 2_000,
    };
    store.save_token("dingtalk#k", &t).await.unwrap();
    assert_eq!(store.token("dingtalk#k").await.unwrap(), Some(t));
    assert!(
        !store.lease("dingtalk#k", "c", 150, 300).await.unwrap(),
        "no lease while the token is fresh"
    );
    assert!(
        store.lease("dingtalk#k", "c", 1_000, 1_300).await.unwrap(),
        "saving released the lease; the token is due for refresh"
    );
    assert_eq!(store.token("dingtalk#other").await.unwrap(), None);
}

async fn a_released_lease_is_free_at_once(store: Arc<dyn Store>) {
    assert!(store.lease("dingtalk#r", "a", 0, 10_000).await.unwrap());
    store.release("dingtalk#r", "b").await.unwrap();
    assert!(
        !store.lease("dingtalk#r", "c", 10, 10_010).await.unwrap(),
        "only its holder gives a lease up"
    );
    store.release("dingtalk#r", "a").await.unwrap();
    assert!(
        store.lease("dingtalk#r", "c", 20, 10_020).await.unwrap(),
        "free before it lapses"
    );
    store.release("dingtalk#none", "a").await.unwrap();
}

async fn dropping_a_token_only_drops_that_token(store: Arc<dyn Store>) {
    let t = TokenRecord {
        access_token: "new".into(),
        refresh_at: 1_000,
        expires_at: 2_000,
    };
    store.save_token("dingtalk#k", &t).await.unwrap();
    store.drop_token("dingtalk#k", "old").await.unwrap();
    assert_eq!(store.token("dingtalk#k").await.unwrap(), Some(t));
    store.drop_token("dingtalk#k", "new").await.unwrap();
    assert_eq!(store.token("dingtalk#k").await.unwrap(), None);
}

async fn receipts_are_noted_on_the_linked_delivery(store: Arc<dyn Store>) {
    let e = event("m9");
    store.insert(&e, &deliveries(&e, 2)).await.unwrap();
    let key = deliveries(&e, 2)[1].key();
    assert_eq!(store.linked("govding", "hb-1").await.unwrap(), None);
    store.link("govding", "hb-1", &key).await.unwrap();
    store.link("govding", "hb-1", &key).await.unwrap();
    assert_eq!(
        store.linked("govding", "hb-1").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store.linked("other", "hb-1").await.unwrap(),
        None,
        "per connector"
    );

    let (read, pushed) = (
        json!({"status": "read", "at": 2}),
        json!({"status": "pushed"}),
    );
    assert!(store.add_receipt(&key, &pushed).await.unwrap());
    assert!(store.add_receipt(&key, &read).await.unwrap());
    let stored = store.deliveries_of(&e.pk()).await.unwrap();
    assert_eq!(stored[1].receipts, [pushed, read], "in the order they came");
    assert!(stored[0].receipts.is_empty());
    let gone = hookbridge::event::DeliveryKey {
        pk: e.pk(),
        sk: "DLV#govding#007".into(),
    };
    assert!(
        !store.add_receipt(&gone, &json!({})).await.unwrap(),
        "no such delivery"
    );
    assert_eq!(
        store.deliveries_of(&e.pk()).await.unwrap().len(),
        2,
        "nothing created"
    );

    // A claim and its record leave the receipts alone.
    let now = 5_000;
    let claimed = store.claim(&key, now, now + 1000).await.unwrap().unwrap();
    assert_eq!(claimed.receipts.len(), 2);
}

async fn cached_values_expire_and_can_be_forgotten(store: Arc<dyn Store>) {
    assert_eq!(store.cached("govding#GE_1", 0).await.unwrap(), None);
    store.cache("govding#GE_1", "10001", 5_000).await.unwrap();
    assert_eq!(
        store
            .cached("govding#GE_1", 4_999)
            .await
            .unwrap()
            .as_deref(),
        Some("10001")
    );
    assert_eq!(
        store.cached("govding#GE_1", 5_000).await.unwrap(),
        None,
        "expired"
    );
    store.cache("govding#GE_1", "10002", 9_000).await.unwrap();
    assert_eq!(
        store
            .cached("govding#GE_1", 6_000)
            .await
            .unwrap()
            .as_deref(),
        Some("10002")
    );
    store.forget("govding#GE_1").await.unwrap();
    store.forget("govding#never").await.unwrap();
    assert_eq!(store.cached("govding#GE_1", 6_000).await.unwrap(), None);
}

async fn ninety_nine_deliveries_fit_in_one_insert(store: Arc<dyn Store>) {
    let e = event("m8");
    let ds = deliveries(&e, hookbridge::event::MAX_DELIVERIES);
    assert_eq!(store.insert(&e, &ds).await.unwrap(), Inserted::Created);
    assert_eq!(store.deliveries_of(&e.pk()).await.unwrap().len(), 99);
}

#[tokio::test]
async fn the_memory_feed_announces_every_pending_delivery() {
    let (store, mut feed) = MemoryStore::with_feed();
    let e = event("feed");
    let ds = deliveries(&e, 2);
    store.insert(&e, &ds).await.unwrap();
    store.insert(&e, &ds).await.unwrap();
    assert_eq!(feed.try_recv().unwrap(), ds[0].key());
    assert_eq!(feed.try_recv().unwrap(), ds[1].key());
    assert!(feed.try_recv().is_err(), "a duplicate announces nothing");
}

/// Everything a durable store acknowledged is there after it is dropped and reopened, and the
/// deliveries that were pending or being sent are announced again.
#[tokio::test]
async fn a_reopened_file_store_has_everything_it_acknowledged() {
    use hookbridge::store::{
        CacheStore, DeliveryStore, HistoryStore, ReceiptStore, TokenStore, UsageStore,
    };
    let (store, _feed, path) = on_file();
    let e = event("durable");
    let ds = deliveries(&e, 3);
    store.insert(&e, &ds).await.unwrap();
    let claimed = store.claim(&ds[0].key(), 10, 1_000).await.unwrap().unwrap();
    let sent = Settled {
        status: Status::Sent,
        attempts: 1,
        result: Some(json!({"task_id": 7})),
        last_error: None,
        next_attempt_at: None,
    };
    assert!(store.record(&claimed, &sent, 20).await.unwrap());
    store.claim(&ds[1].key(), 30, 1_000).await.unwrap().unwrap();
    let token = TokenRecord {
        access_token: "tok".into(),
        refresh_at: 5_000,
        expires_at: 9_000,
    };
    store.save_token("dingtalk#app", &token).await.unwrap();
    store.link("govding", "hb-9", &ds[0].key()).await.unwrap();
    store
        .add_receipt(&ds[0].key(), &json!({"status": "read"}))
        .await
        .unwrap();
    store.cache("c", "v", i64::MAX).await.unwrap();
    store
        .add_usage("dingtalk#k", "2026-12", 7, 5_000)
        .await
        .unwrap();
    drop(store);

    let (again, mut feed) = MemoryStore::durable(&path).unwrap();
    let stored = again.deliveries_of(&e.pk()).await.unwrap();
    let statuses: Vec<Status> = stored.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [Status::Sent, Status::Pending, Status::Pending],
        "the claim the crashed process held is given back at once"
    );
    assert_eq!(stored[0].result, Some(json!({"task_id": 7})));
    assert_eq!(stored[0].receipts, [json!({"status": "read"})]);
    assert_eq!(
        again.insert(&e, &ds).await.unwrap(),
        Inserted::Duplicate,
        "dedupe survives"
    );
    assert_eq!(again.token("dingtalk#app").await.unwrap(), Some(token));
    assert_eq!(
        again.linked("govding", "hb-9").await.unwrap(),
        Some(ds[0].key())
    );
    assert_eq!(again.cached("c", 0).await.unwrap().as_deref(), Some("v"));
    assert_eq!(again.usage_in("2026-12").await.unwrap()[0].calls, 7);
    let announced: Vec<_> = std::iter::from_fn(|| feed.try_recv().ok()).collect();
    assert_eq!(
        announced,
        [ds[1].key(), ds[2].key()],
        "both are sent again, the sent one not"
    );
}

/// Claims `d` and records it dead after `attempts` at `now`.
async fn kill(store: &dyn Store, d: &Delivery, now: i64) {
    let c = store
        .claim(&d.key(), now, now + 100)
        .await
        .unwrap()
        .unwrap();
    let dead = Settled {
        status: Status::Dead,
        attempts: c.attempts,
        result: None,
        last_error: Some("errcode 40078: 不存在的临时授权码".into()),
        next_attempt_at: None,
    };
    assert!(store.record(&c, &dead, now).await.unwrap());
}

async fn replay_gives_a_dead_delivery_a_new_budget_once(store: Arc<dyn Store>) {
    let e = event("replay");
    let ds = deliveries(&e, 2);
    store.insert(&e, &ds).await.unwrap();
    kill(store.as_ref(), &ds[0], 50).await;
    assert_eq!(
        store.replay(&ds[1].key(), 60).await.unwrap(),
        None,
        "a pending delivery is not replayed"
    );
    let replayed = store.replay(&ds[0].key(), 60).await.unwrap().unwrap();
    assert_eq!(store.replay(&ds[0].key(), 61).await.unwrap(), None, "once");
    let stored = store.delivery(&ds[0].key()).await.unwrap().unwrap();
    assert_eq!(stored, replayed, "what replay returns is what is stored");
    assert_eq!(
        (stored.status, stored.attempts, stored.last_error.as_deref()),
        (Status::Pending, 0, None)
    );
    assert_eq!(
        stored.replays,
        [Replay {
            at: 60,
            attempts: 1,
            error: Some("errcode 40078: 不存在的临时授权码".into())
        }]
    );
    assert!(
        store.due(i64::MAX, 10).await.unwrap().is_empty(),
        "a replayed delivery is no longer in the status-due index"
    );
    let again = store.claim(&ds[0].key(), 70, 170).await.unwrap().unwrap();
    assert_eq!(again.attempts, 1, "the budget starts again");
    assert_eq!(
        store
            .delivery(&ds[0].key().clone())
            .await
            .unwrap()
            .unwrap()
            .replays
            .len(),
        1
    );
    let missing = hookbridge::event::DeliveryKey {
        pk: e.pk(),
        sk: "DLV#dingtalk#999".into(),
    };
    assert_eq!(store.delivery(&missing).await.unwrap(), None);
    assert_eq!(store.replay(&missing, 80).await.unwrap(), None);

    // A delivery pending 15 minutes was left behind (its stream record went to the failure
    // queue): replayed, once.
    let behind = LEFT_BEHIND + ds[1].updated_at;
    assert_eq!(store.replay(&ds[1].key(), behind - 1).await.unwrap(), None);
    let replayed = store.replay(&ds[1].key(), behind).await.unwrap().unwrap();
    assert_eq!(
        (replayed.status, replayed.updated_at),
        (Status::Pending, behind)
    );
    assert_eq!(
        store.replay(&ds[1].key(), behind + 1).await.unwrap(),
        None,
        "once"
    );
    assert_eq!(
        store.delivery(&ds[1].key()).await.unwrap().unwrap(),
        replayed
    );
}

async fn a_sent_delivery_is_recalled_once(store: Arc<dyn Store>) {
    let e = event("recall");
    let ds = deliveries(&e, 2);
    store.insert(&e, &ds).await.unwrap();
    let c = store.claim(&ds[0].key(), 50, 150).await.unwrap().unwrap();
    let sent = Settled {
        status: Status::Checking,
        attempts: c.attempts,
        result: Some(serde_json::json!({ "task_id": 7 })),
        last_error: None,
        next_attempt_at: Some(900),
    };
    assert!(store.record(&c, &sent, 60).await.unwrap());
    let note = serde_json::json!({ "status": "recalled", "by": "operator" });
    assert_eq!(
        store.recalled(&ds[1].key(), &note, 70).await.unwrap(),
        None,
        "a pending delivery is not recalled"
    );
    let recalled = store
        .recalled(&ds[0].key(), &note, 70)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.recalled(&ds[0].key(), &note, 71).await.unwrap(),
        None,
        "once"
    );
    let stored = store.delivery(&ds[0].key()).await.unwrap().unwrap();
    assert_eq!(stored, recalled, "what recalled returns is what is stored");
    assert_eq!(
        (
            stored.status,
            stored.next_attempt_at,
            stored.receipts.clone()
        ),
        (Status::Recalled, None, vec![note])
    );
    assert!(
        store.due(i64::MAX, 10).await.unwrap().is_empty(),
        "a recalled delivery is not followed up"
    );
}

async fn each_attempt_keeps_its_answer(store: Arc<dyn Store>) {
    let e = event("answers");
    let ds = deliveries(&e, 1);
    store.insert(&e, &ds).await.unwrap();
    let key = ds[0].key();
    let settle = |status, attempts, error: Option<&str>| Settled {
        status,
        attempts,
        result: None,
        last_error: error.map(str::to_owned),
        next_attempt_at: Some(0),
    };
    // A failure, then a throttle (no attempt spent: not an answer), then the send.
    let c = store.claim(&key, 10, 100).await.unwrap().unwrap();
    let failed = settle(Status::Retrying, c.attempts, Some("errcode -1: 系统繁忙"));
    assert!(store.record(&c, &failed, 20).await.unwrap());
    assert!(store.requeue(&key, 25).await.unwrap());
    let c = store.claim(&key, 30, 130).await.unwrap().unwrap();
    let throttled = settle(Status::Retrying, c.attempts - 1, Some("too fast"));
    assert!(store.record(&c, &throttled, 40).await.unwrap());
    assert!(store.requeue(&key, 45).await.unwrap());
    let c = store.claim(&key, 50, 150).await.unwrap().unwrap();
    assert!(
        store
            .record(&c, &settle(Status::Sent, c.attempts, None), 60)
            .await
            .unwrap()
    );
    let d = store.delivery(&key).await.unwrap().unwrap();
    let answers: Vec<(i64, Status, Option<&str>)> = d
        .answers
        .iter()
        .map(|a| (a.at, a.status, a.said.as_deref()))
        .collect();
    assert_eq!(
        answers,
        [
            (20, Status::Retrying, Some("errcode -1: 系统繁忙")),
            (60, Status::Sent, None)
        ]
    );
}

async fn events_are_listed_with_those_that_made_no_delivery(store: Arc<dyn Store>) {
    use hookbridge::event::EventFilter;
    let mut unreadable = event("u-1");
    (unreadable.source, unreadable.kind, unreadable.received_at) =
        ("govding".into(), "unreadable".into(), 3_000);
    unreadable.raw = "\u{0}<script>not json".into();
    let mut later = event("todo-2");
    later.received_at = 2_000;
    let first = event("todo-1");
    store.insert(&first, &deliveries(&first, 1)).await.unwrap();
    store.insert(&later, &[]).await.unwrap();
    store.insert(&unreadable, &[]).await.unwrap();
    let all = store.events(&EventFilter::default(), 10).await.unwrap();
    let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["u-1", "todo-2", "todo-1"],
        "newest first, with or without deliveries"
    );
    assert_eq!(all[0].raw, unreadable.raw, "the body as received");
    let only = |f: EventFilter| {
        let store = store.clone();
        async move {
            let found = store.events(&f, 10).await.unwrap();
            found.into_iter().map(|e| e.key).collect::<Vec<_>>()
        }
    };
    let govding = EventFilter {
        source: Some("govding".into()),
        ..Default::default()
    };
    assert_eq!(only(govding).await, ["u-1"]);
    let todo_since = EventFilter {
        kind: Some("todo".into()),
        since: Some(1_500),
        ..Default::default()
    };
    assert_eq!(only(todo_since).await, ["todo-2"]);
    let by_key = EventFilter {
        key: Some("odo-".into()),
        ..Default::default()
    };
    assert_eq!(only(by_key).await, ["todo-2", "todo-1"], "part of the key");
    assert_eq!(
        store
            .events(&EventFilter::default(), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let one = store.event(&unreadable.pk()).await.unwrap().unwrap();
    assert_eq!(
        (one.kind.as_str(), one.raw.as_str()),
        ("unreadable", unreadable.raw.as_str())
    );
    assert_eq!(store.event("EVT#hap#nothing").await.unwrap(), None);
}

async fn list_filters_and_orders_newest_first(store: Arc<dyn Store>) {
    let hap = event("listed");
    let mut dms = event("listed");
    dms.source = "dms".into();
    let mut zentao = deliveries(&dms, 1);
    zentao[0].connector = "zentao".into();
    zentao[0].sk = "DLV#zentao#000".into();
    let ds = deliveries(&hap, 3);
    store.insert(&hap, &ds).await.unwrap();
    store.insert(&dms, &zentao).await.unwrap();
    kill(store.as_ref(), &ds[0], 2_000).await;
    kill(store.as_ref(), &ds[2], 3_000).await;
    let keys = |list: Vec<Delivery>| -> Vec<String> {
        list.into_iter()
            .map(|d| format!("{}/{}", d.pk, d.sk))
            .collect()
    };
    let f = |json: serde_json::Value| -> DeliveryFilter { serde_json::from_value(json).unwrap() };
    let dead = store.list(&f(json!({"status": "dead"})), 10).await.unwrap();
    assert_eq!(
        keys(dead),
        [
            format!("{}/{}", hap.pk(), ds[2].sk),
            format!("{}/{}", hap.pk(), ds[0].sk)
        ],
        "dead ones, newest first"
    );
    let one = store.list(&f(json!({"status": "dead"})), 1).await.unwrap();
    assert_eq!(one[0].sk, ds[2].sk, "the limit keeps the newest");
    let from_dms = store.list(&f(json!({"source": "dms"})), 10).await.unwrap();
    assert_eq!(keys(from_dms), [format!("{}/DLV#zentao#000", dms.pk())]);
    let by_zentao = store
        .list(&f(json!({"connector": "zentao"})), 10)
        .await
        .unwrap();
    assert_eq!(by_zentao.len(), 1);
    let since = store.list(&f(json!({"since": 2_500})), 10).await.unwrap();
    assert_eq!(keys(since), [format!("{}/{}", hap.pk(), ds[2].sk)]);
    assert_eq!(
        store
            .list(&DeliveryFilter::default(), 10)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// Retention on the stores of `serve` (DynamoDB's own TTL does it on AWS): old events,
/// their deliveries, links and expired cache entries go, from memory and from the file, and
/// an expired event's key no longer dedupes.
#[tokio::test]
async fn retention_removes_what_is_older_and_keeps_the_rest() {
    use hookbridge::store::{CacheStore, HistoryStore, ReceiptStore};
    let day = 86_400_000;
    let retention = std::time::Duration::from_secs(30 * 86_400);
    let (store, _feed, path) = on_file();
    let old = event("old");
    let mut new = event("new");
    new.received_at = 20 * day;
    let old_ds = deliveries(&old, 2);
    let new_ds: Vec<Delivery> = deliveries(&new, 1)
        .into_iter()
        .map(|mut d| {
            d.created_at = 20 * day;
            d
        })
        .collect();
    store.insert(&old, &old_ds).await.unwrap();
    store.insert(&new, &new_ds).await.unwrap();
    store
        .link("govding", "hb-old", &old_ds[0].key())
        .await
        .unwrap();
    store
        .link("govding", "hb-new", &new_ds[0].key())
        .await
        .unwrap();
    store.cache("stale", "v", 1_000).await.unwrap();
    store.cache("fresh", "v", 40 * day).await.unwrap();
    assert_eq!(
        store.purge(1_000, retention).unwrap(),
        0,
        "nothing is old yet"
    );
    // 31 days on: the first event, its two deliveries, its link and the stale entry go.
    assert_eq!(store.purge(31 * day, retention).unwrap(), 5);
    assert_eq!(store.purge(31 * day, retention).unwrap(), 0, "once");
    drop(store);
    let (store, _feed) = MemoryStore::durable(&path).unwrap();
    assert!(store.deliveries_of(&old.pk()).await.unwrap().is_empty());
    assert_eq!(store.deliveries_of(&new.pk()).await.unwrap(), new_ds);
    assert_eq!(store.linked("govding", "hb-old").await.unwrap(), None);
    assert_eq!(
        store.linked("govding", "hb-new").await.unwrap(),
        Some(new_ds[0].key())
    );
    assert_eq!(
        store.cached("fresh", 31 * day).await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(
        store.insert(&new, &new_ds).await.unwrap(),
        Inserted::Duplicate
    );
    assert_eq!(
        store.insert(&old, &old_ds).await.unwrap(),
        Inserted::Created,
        "the expired dedupe key is gone with its event"
    );
}

async fn pacing_windows_take_their_limit_fleet_wide(store: Arc<dyn Store>) {
    let takes = (0..12).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.take_slot("dingtalk#k#send", 100, 4).await })
    });
    let mut taken = 0;
    for take in takes {
        taken += usize::from(take.await.unwrap().unwrap());
    }
    assert_eq!(taken, 4, "12 senders at once, 4 places");
    assert!(
        store.take_slot("dingtalk#k#other", 100, 4).await.unwrap(),
        "each name has its own windows"
    );
    assert!(
        store.take_slot("dingtalk#k#send", 101, 4).await.unwrap(),
        "the next window has room again"
    );
}

async fn marks_only_ever_rise_and_each_is_taken_once(store: Arc<dyn Store>) {
    let takes = (0..12).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.advance("zentao#e", 1_700_000_000).await })
    });
    let mut taken = 0;
    for take in takes {
        taken += usize::from(take.await.unwrap().unwrap());
    }
    assert_eq!(taken, 1, "12 senders want the same second: one gets it");
    assert!(
        !store.advance("zentao#e", 1_699_999_999).await.unwrap(),
        "a lower mark comes too late"
    );
    assert!(store.advance("zentao#e", 1_700_000_001).await.unwrap());
    assert!(
        store.advance("zentao#other", 5).await.unwrap(),
        "each name has its own mark"
    );
}

async fn usage_is_counted_atomically_per_name_and_month(store: Arc<dyn Store>) {
    let adds = (0..20).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.add_usage("dingtalk#k", "2026-12", 1, 5_000).await })
    });
    let mut totals = vec![];
    for add in adds {
        totals.push(add.await.unwrap().unwrap());
    }
    totals.sort();
    assert_eq!(
        totals,
        (1..=20).collect::<Vec<u64>>(),
        "each sender sees its own total"
    );
    assert_eq!(
        store
            .add_usage("dingtalk#k", "2026-11", 3, 5_000)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .add_usage("dingtalk#other", "2026-12", 2, 0)
            .await
            .unwrap(),
        2
    );
    let mut december = store.usage_in("2026-12").await.unwrap();
    december.sort_by(|a, b| a.name.cmp(&b.name));
    let seen: Vec<(&str, u64, u64)> = december
        .iter()
        .map(|u| (u.name.as_str(), u.calls, u.quota))
        .collect();
    assert_eq!(seen, [("dingtalk#k", 20, 5_000), ("dingtalk#other", 2, 0)]);
    assert!(store.usage_in("2027-01").await.unwrap().is_empty());
}
