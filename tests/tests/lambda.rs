//! The Lambda entry points, driven with real event payloads: API Gateway HTTP API (v2)
//! requests for `hap-webhook`, DynamoDB stream batches (images read from DynamoDB Local) for
//! `dingtalk-sender`, and an EventBridge schedule for `retry-sweeper`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::dynamodb::Event as StreamEvent;
use hookbridge::event::{Delivery, DeliveryFilter, DeliveryKey, Event, Millis, Settled, Status};
use hookbridge::store::memory::MemoryStore;
use hookbridge::store::{
    CacheStore, DeliveryStore, Due, EventStore, HistoryStore, Inserted, RateStore, ReceiptStore,
    Store, StoreError, TokenRecord, TokenStore, Usage, UsageStore,
};
use hookbridge_tests::fake_dingtalk::FakeDingTalk;
use hookbridge_tests::{HAP_TOKEN, app_on, config, events, fixture};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

fn apigw_v2(path: &str, body: &str, token: Option<&str>, base64: bool) -> lambda_http::Request {
    let payload = events::apigw_v2(path, body, token, base64);
    lambda_http::request::from_str(&payload.to_string()).expect("a valid API Gateway v2 payload")
}

async fn stream_batch(table: &str, items: &[(&str, &str, &str)]) -> StreamEvent {
    serde_json::from_value(events::stream_batch(table, items).await)
        .expect("a valid DynamoDB stream event")
}

async fn invoke_http(app: &hookbridge::app::App, req: lambda_http::Request) -> (u16, Value) {
    let resp = hookbridge::lambda::http(app, req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        other => panic!("expected a text body, got {other:?}"),
    };
    (resp.status().as_u16(), serde_json::from_str(&body).unwrap())
}

/// On a named stage the path carries exactly `/<stage>` in front, which is removed; anything
/// else in front of a webhook path is a 404.
#[tokio::test]
async fn a_named_stage_prefix_is_removed_exactly() {
    let app = app_on(config(None, ""), Arc::new(MemoryStore::new())).await;
    let todo = fixture("hap-message-todo.json");
    let staged = |path: &str| {
        let mut payload = events::apigw_v2(path, &todo, Some(HAP_TOKEN), false);
        payload["requestContext"]["stage"] = json!("prod");
        lambda_http::request::from_str(&payload.to_string()).unwrap()
    };
    let (status, body) = invoke_http(&app, staged("/prod/hap/message")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = invoke_http(&app, staged("/other/hap/message")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = invoke_http(
        &app,
        apigw_v2("/x/hap/message", &todo, Some(HAP_TOKEN), false),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn hap_webhook_answers_api_gateway_v2_requests() {
    let app = app_on(config(None, ""), Arc::new(MemoryStore::new())).await;
    let todo = fixture("hap-message-todo.json");
    let (status, body) = invoke_http(
        &app,
        apigw_v2("/hap/message", &todo, Some(HAP_TOKEN), false),
    )
    .await;
    assert_eq!((status, &body["deliveries"]), (200, &json!(2)), "{body}");
    let (status, body) =
        invoke_http(&app, apigw_v2("/hap/message", &todo, Some(HAP_TOKEN), true)).await;
    assert_eq!(
        (status, &body["duplicate"]),
        (200, &json!(true)),
        "a base64 body is the same event: {body}"
    );
    let (status, body) = invoke_http(
        &app,
        apigw_v2(
            "/hap/todo",
            &fixture("hap-finish-todo.json"),
            Some(HAP_TOKEN),
            false,
        ),
    )
    .await;
    assert_eq!((status, &body["deliveries"]), (200, &json!(1)), "{body}");
    let (status, body) =
        invoke_http(&app, apigw_v2("/hap/message", &todo, Some("nope"), false)).await;
    assert_eq!((status, body["success"].clone()), (401, json!(false)));
    let (status, _) = invoke_http(
        &app,
        apigw_v2("/hap/message", "{\"messageId\":", Some(HAP_TOKEN), false),
    )
    .await;
    assert_eq!(status, 400);
}

fn invocation<T>(payload: T) -> LambdaEvent<T> {
    LambdaEvent::new(payload, Context::default())
}

#[tokio::test]
async fn dingtalk_sender_consumes_stream_batches_once() {
    let fake = FakeDingTalk::start().await;
    let store = hookbridge_tests::dynamo_store().await;
    let table = store.table().to_owned();
    let app = app_on(config(Some(&fake.url), ""), Arc::new(store)).await;
    let req = hookbridge_tests::request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    assert_eq!(
        app.ingress
            .handle(req, hookbridge::event::now_ms())
            .await
            .status,
        200
    );
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let batch = stream_batch(
        &table,
        &[
            ("INSERT", pk, "EVT"),
            ("INSERT", pk, "DLV#dingtalk#000"),
            ("INSERT", pk, "DLV#dingtalk#001"),
        ],
    )
    .await;
    let resp = hookbridge::lambda::stream(&app, invocation(batch.clone()))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(fake.count("asyncsend_v2"), 2);
    let statuses: Vec<Status> = app
        .store
        .deliveries_of(pk)
        .await
        .unwrap()
        .iter()
        .map(|d| d.status)
        .collect();
    assert_eq!(statuses, [Status::Sent, Status::Sent]);

    // Streams deliver at least once: the same batch again sends nothing.
    let resp = hookbridge::lambda::stream(&app, invocation(batch))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(fake.count("asyncsend_v2"), 2);

    // Records of sent deliveries (what the filter keeps out) are ignored if they get through.
    let sent = stream_batch(&table, &[("MODIFY", pk, "DLV#dingtalk#000")]).await;
    hookbridge::lambda::stream(&app, invocation(sent))
        .await
        .unwrap();
    assert_eq!(fake.count("asyncsend_v2"), 2);
}

/// A sender's calls are counted for `hookbridge status` once per batch: after the invocation
/// the count is in the table, with no write per call.
#[tokio::test]
async fn a_batch_writes_its_call_counts_when_it_ends() {
    use hookbridge_tests::fake_zentao::{self, FakeZenTao};
    let zentao = FakeZenTao::start().await;
    let store = hookbridge_tests::dynamo_store().await;
    let table = store.table().to_owned();
    let extra = format!(
        "{}\n[recipients.zentao.map]\nmanager4220 = \"zhangsan\"\n",
        fake_zentao::hap_route(&zentao.url)
    );
    let app = app_on(config(None, &extra), Arc::new(store)).await;
    let req = hookbridge_tests::request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    let now = hookbridge::event::now_ms();
    assert_eq!(app.ingress.handle(req, now).await.status, 200);
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let batch = stream_batch(&table, &[("INSERT", pk, "DLV#zentao#000")]).await;
    let resp = hookbridge::lambda::stream(&app, invocation(batch))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(zentao.calls("sendNotification").len(), 1);
    let month = hookbridge::event::beijing_month(now);
    let mut counted = 0;
    // Another test's flush may be the one writing it: waited for, not flushed here.
    for _ in 0..50 {
        let usage = app.store.usage_in(&month).await.unwrap();
        counted = usage
            .iter()
            .find(|u| u.name == "zentao#main")
            .map_or(0, |u| u.calls);
        if counted > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counted, 1);
}

#[tokio::test]
async fn retry_sweeper_requeues_due_deliveries_on_schedule() {
    let fake = FakeDingTalk::start().await;
    fake.inject(
        "/topapi/message/corpconversation/asyncsend_v2",
        200,
        r#"{"errcode":500,"errmsg":"系统错误"}"#,
        1,
    );
    let cfg = config(Some(&fake.url), "\n[delivery]\nbackoff_base_secs = 0");
    let (store, mut feed) = MemoryStore::with_feed();
    let store = Arc::new(store);
    let app = app_on(cfg, store.clone()).await;
    let req = hookbridge_tests::request(
        "/hap/message",
        fixture("hap-message-mention.json"),
        Some(HAP_TOKEN),
    );
    app.ingress.handle(req, hookbridge::event::now_ms()).await;
    let key = feed.try_recv().unwrap();
    assert_eq!(
        app.sender.process(&key).await.unwrap(),
        Some(Status::Retrying)
    );
    let schedule = events::schedule();
    let out = hookbridge::lambda::sweeper(app.store.as_ref(), None, invocation(schedule.clone()))
        .await
        .unwrap();
    assert_eq!(out, json!({"requeued": 1, "handed_off": 0}));
    assert_eq!(
        feed.try_recv().unwrap(),
        key,
        "re-queued deliveries go back to the senders"
    );
    assert_eq!(app.sender.process(&key).await.unwrap(), Some(Status::Sent));
    let out = hookbridge::lambda::sweeper(app.store.as_ref(), None, invocation(schedule))
        .await
        .unwrap();
    assert_eq!(out, json!({"requeued": 0, "handed_off": 0}));
}

/// A store whose `record` fails for one delivery, as when DynamoDB throttles that write.
struct FailsToRecord {
    inner: MemoryStore,
    broken: DeliveryKey,
}

#[async_trait]
impl EventStore for FailsToRecord {
    async fn insert(&self, e: &Event, d: &[Delivery]) -> Result<Inserted, StoreError> {
        self.inner.insert(e, d).await
    }
    async fn events(
        &self,
        f: &hookbridge::event::EventFilter,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.events(f, limit).await
    }
    async fn event(&self, pk: &str) -> Result<Option<Event>, StoreError> {
        self.inner.event(pk).await
    }
}

#[async_trait]
impl ReceiptStore for FailsToRecord {
    async fn link(&self, c: &str, r: &str, k: &DeliveryKey) -> Result<(), StoreError> {
        self.inner.link(c, r, k).await
    }
    async fn linked(&self, c: &str, r: &str) -> Result<Option<DeliveryKey>, StoreError> {
        self.inner.linked(c, r).await
    }
    async fn add_receipt(&self, k: &DeliveryKey, r: &Value) -> Result<bool, StoreError> {
        self.inner.add_receipt(k, r).await
    }
}

#[async_trait]
impl UsageStore for FailsToRecord {
    async fn add_usage(&self, n: &str, p: &str, calls: u64, q: u64) -> Result<u64, StoreError> {
        self.inner.add_usage(n, p, calls, q).await
    }
    async fn usage_in(&self, p: &str) -> Result<Vec<Usage>, StoreError> {
        self.inner.usage_in(p).await
    }
}

#[async_trait]
impl RateStore for FailsToRecord {
    async fn take_slot(&self, n: &str, w: i64, limit: u32) -> Result<bool, StoreError> {
        self.inner.take_slot(n, w, limit).await
    }
    async fn advance(&self, n: &str, mark: i64) -> Result<bool, StoreError> {
        self.inner.advance(n, mark).await
    }
}

#[async_trait]
impl CacheStore for FailsToRecord {
    async fn cached(&self, name: &str, now: Millis) -> Result<Option<String>, StoreError> {
        self.inner.cached(name, now).await
    }
    async fn cache(&self, name: &str, value: &str, until: Millis) -> Result<(), StoreError> {
        self.inner.cache(name, value, until).await
    }
    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        self.inner.forget(name).await
    }
}

#[async_trait]
impl HistoryStore for FailsToRecord {
    async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError> {
        self.inner.deliveries_of(pk).await
    }
}

#[async_trait]
impl DeliveryStore for FailsToRecord {
    async fn claim(
        &self,
        k: &DeliveryKey,
        now: Millis,
        until: Millis,
    ) -> Result<Option<Delivery>, StoreError> {
        self.inner.claim(k, now, until).await
    }
    async fn record(&self, c: &Delivery, s: &Settled, now: Millis) -> Result<bool, StoreError> {
        if c.key() == self.broken {
            return Err(StoreError::Unavailable(
                "ProvisionedThroughputExceededException".into(),
            ));
        }
        self.inner.record(c, s, now).await
    }
    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        self.inner.due(now, limit).await
    }
    async fn requeue(&self, k: &DeliveryKey, now: Millis) -> Result<bool, StoreError> {
        self.inner.requeue(k, now).await
    }
    async fn list(&self, f: &DeliveryFilter, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.inner.list(f, limit).await
    }
    async fn replay(&self, k: &DeliveryKey, now: Millis) -> Result<Option<Delivery>, StoreError> {
        self.inner.replay(k, now).await
    }
    async fn recalled(
        &self,
        k: &DeliveryKey,
        note: &serde_json::Value,
        now: Millis,
    ) -> Result<Option<Delivery>, StoreError> {
        self.inner.recalled(k, note, now).await
    }
}

#[async_trait]
impl TokenStore for FailsToRecord {
    async fn token(&self, n: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token(n).await
    }
    async fn lease(
        &self,
        n: &str,
        o: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        self.inner.lease(n, o, now, until).await
    }
    async fn save_token(&self, n: &str, t: &TokenRecord) -> Result<(), StoreError> {
        self.inner.save_token(n, t).await
    }
    async fn drop_token(&self, n: &str, t: &str) -> Result<(), StoreError> {
        self.inner.drop_token(n, t).await
    }
    async fn release(&self, n: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.release(n, owner).await
    }
}

#[tokio::test]
async fn a_record_whose_outcome_cannot_be_stored_is_reported_alone() {
    let fake = FakeDingTalk::start().await;
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let store: Arc<dyn Store> = Arc::new(FailsToRecord {
        inner: MemoryStore::new(),
        broken: DeliveryKey {
            pk: pk.into(),
            sk: "DLV#dingtalk#001".into(),
        },
    });
    let app = app_on(config(Some(&fake.url), ""), store.clone()).await;
    let req = hookbridge_tests::request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    app.ingress.handle(req, hookbridge::event::now_ms()).await;
    let record = |seq: &str, sk: &str| {
        json!({
            "eventID": seq, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "cn-north-1",
            "dynamodb": {
                "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
                "NewImage": {"pk": {"S": pk}, "sk": {"S": sk}, "connector": {"S": "dingtalk"}, "status": {"S": "pending"}, "attempts": {"N": "0"}},
                "SequenceNumber": seq, "SizeBytes": 120, "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/hookbridge/stream/2026-11-22T00:00:00.000"
        })
    };
    let batch: StreamEvent = serde_json::from_value(json!({
        "Records": [record("400000000000000000001", "DLV#dingtalk#000"), record("400000000000000000002", "DLV#dingtalk#001")]
    }))
    .unwrap();
    let resp = hookbridge::lambda::stream(&app, invocation(batch))
        .await
        .unwrap();
    let failed: Vec<Option<String>> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [Some("400000000000000000002".to_owned())]);
    let serialized = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        serialized,
        json!({"batchItemFailures": [{"itemIdentifier": "400000000000000000002"}]})
    );
    let statuses: HashMap<String, Status> = store
        .deliveries_of(pk)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.sk, d.status))
        .collect();
    assert_eq!(statuses["DLV#dingtalk#000"], Status::Sent);
    assert_eq!(
        statuses["DLV#dingtalk#001"],
        Status::Sending,
        "stays claimed; the sweeper re-queues it when the claim lapses"
    );
}

fn template() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap()
}

/// The block of lines after the first line of `text` from `from` on that is `marker`, up to
/// the first line indented less than the block's first line, with that indent removed.
fn block_after(text: &str, from: &str, marker: &str) -> Vec<String> {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("template.yaml has {from}"));
    let mut lines = text[start..]
        .lines()
        .skip_while(|l| l.trim() != marker)
        .skip(1);
    let first = lines.next().unwrap();
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(
            lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent),
        )
        .map(|l| l.get(indent..).unwrap_or("").to_owned())
        .collect()
}

/// The stream filters of the sender functions, in template order.
fn template_filters() -> Vec<Value> {
    let text = template();
    text.match_indices("- Pattern: >-")
        .map(|(at, _)| {
            let lines = block_after(&text[at..], "- Pattern", "- Pattern: >-");
            serde_json::from_str(&lines.join(" ")).expect("the filter pattern is JSON")
        })
        .collect()
}

/// EventBridge-style matching as Lambda filters do it, for the subset the template uses:
/// objects nest, arrays list the accepted values.
fn filter_matches(pattern: &Value, event: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(k, p)| filter_matches(p, event.get(k).unwrap_or(&Value::Null))),
        Value::Array(accepted) => accepted.contains(event),
        _ => false,
    }
}

#[tokio::test]
async fn the_template_stream_filters_pass_exactly_each_senders_pending_deliveries() {
    let filters = template_filters();
    let connectors: Vec<&str> = hookbridge::registry::CONNECTORS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(filters.len(), connectors.len(), "one sender per connector");
    let filter = &filters[0];
    let fake = FakeDingTalk::start().await;
    let store = hookbridge_tests::dynamo_store().await;
    let table = store.table().to_owned();
    let app = app_on(config(Some(&fake.url), ""), Arc::new(store)).await;
    let req = hookbridge_tests::request(
        "/hap/message",
        fixture("hap-message-mention.json"),
        Some(HAP_TOKEN),
    );
    app.ingress.handle(req, hookbridge::event::now_ms()).await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    let passes = |batch: StreamEvent| {
        let records = serde_json::to_value(batch).unwrap()["Records"].clone();
        records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| filter_matches(filter, r))
            .collect::<Vec<bool>>()
    };
    let inserted = stream_batch(
        &table,
        &[("INSERT", pk, "EVT"), ("INSERT", pk, "DLV#dingtalk#000")],
    )
    .await;
    assert_eq!(
        passes(inserted.clone()),
        [false, true],
        "the event item stays out, the pending delivery gets in"
    );
    // Each connector's pending delivery is taken by exactly one sender: its own.
    let records = serde_json::to_value(inserted.clone()).unwrap()["Records"].clone();
    for connector in connectors {
        let mut record = records[1].clone();
        record["dynamodb"]["NewImage"]["connector"] = json!({ "S": connector });
        let takers: Vec<&Value> = filters
            .iter()
            .filter(|f| filter_matches(f, &record))
            .collect();
        assert_eq!(takers.len(), 1, "{connector}: {takers:?}");
        assert_eq!(
            takers[0]["dynamodb"]["NewImage"]["connector"]["S"],
            json!([connector]),
            "{connector}"
        );
    }
    hookbridge::lambda::stream(&app, invocation(inserted))
        .await
        .unwrap();
    let sent = stream_batch(&table, &[("MODIFY", pk, "DLV#dingtalk#000")]).await;
    assert_eq!(
        passes(sent),
        [false],
        "a sent delivery does not trigger the sender again"
    );
}

/// The stack's config is a file in a layer: the template packages config/stack/ and points
/// every function at it, and every secret the config names is one the functions may read.
#[test]
fn the_stack_config_is_packaged_and_its_secrets_are_readable() {
    let template = template();
    let layer = block_after(&template, "  ConfigLayer:", "Properties:");
    assert!(
        layer
            .iter()
            .any(|l| l.trim() == "ContentUri: config/stack/"),
        "{layer:?}"
    );
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/stack/hookbridge.toml"
    );
    let text = std::fs::read_to_string(file).unwrap();
    hookbridge::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        template.contains(&format!(
            "        {}: /opt/hookbridge.toml\n",
            hookbridge::lambda::CONFIG_FILE_VAR
        )),
        "every function reads the layer's file"
    );
    let prefix = block_after(&template, "  SecretNamePrefix:", "Type: String")
        .iter()
        .find_map(|l| l.trim().strip_prefix("Default: ").map(str::to_owned))
        .expect("SecretNamePrefix has a default");
    // Commented examples included: they are what operators uncomment.
    let refs: Vec<&str> = text
        .split("secretsmanager:")
        .skip(1)
        .map(|rest| rest.split(['"', '#', '<', ' ', '`']).next().unwrap())
        .filter(|r| !r.is_empty())
        .collect();
    assert!(refs.len() >= 3, "{refs:?}");
    for r in refs {
        assert!(r.starts_with(&prefix), "secret {r} is not under {prefix}");
    }
}

/// DMS → dms-webhook → DynamoDB Local → stream → dingtalk-sender and zentao-sender, each
/// built with only its own part, as the functions are.
#[tokio::test]
async fn a_dms_event_flows_through_the_lambda_entry_points_to_both_connectors() {
    use hookbridge::app::{App, Parts};
    use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, KEY};
    let dingtalk = FakeDingTalk::start().await;
    let zentao = FakeZenTao::start().await;
    let extra = format!(
        "\n[sources.dms]\nsignature_key = \"plain:dms-secret\"\n\
         [connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n\
         [[routes]]\nsource = \"dms\"\nconnector = \"dingtalk\"\n\
         [[routes]]\nsource = \"dms\"\nconnector = \"zentao\"\n\
         [recipients.dingtalk.map]\n\"1673826650168842\" = \"lisi_ding\"\n\
         [recipients.zentao.map]\n\"1673826650168842\" = \"lisi\"\n",
        zentao.url
    );
    let cfg = config(Some(&dingtalk.url), &extra);
    let store = Arc::new(hookbridge_tests::dynamo_store().await);
    let table = store.table().to_owned();
    let secrets = hookbridge::config::Secrets::default();
    let part = |p| App::build(cfg.clone(), store.clone(), &secrets, p);
    let (webhook, dt_sender, zt_sender) = (
        part(Parts::Source("dms")).await.unwrap(),
        part(Parts::Connector("dingtalk")).await.unwrap(),
        part(Parts::Connector("zentao")).await.unwrap(),
    );

    let (status, body) = invoke_http(
        &webhook,
        apigw_v2("/dms", &fixture("dms-approval-pending.json"), None, false),
    )
    .await;
    assert_eq!((status, body), (200, json!({"root": "", "success": true})));
    let delivery = &store.recent(10).await.unwrap()[0];
    let pk = delivery.pk.clone();
    let batch = stream_batch(
        &table,
        &[
            ("INSERT", &pk, "DLV#dingtalk#000"),
            ("INSERT", &pk, "DLV#zentao#000"),
        ],
    )
    .await;
    for sender in [&dt_sender, &zt_sender] {
        let resp = hookbridge::lambda::stream(sender, invocation(batch.clone()))
            .await
            .unwrap();
        assert!(resp.batch_item_failures.is_empty());
    }
    assert_eq!(dingtalk.tasks().len(), 1);
    assert_eq!(dingtalk.tasks()[0].userids, ["lisi_ding"]);
    let notes = zentao.calls("sendNotification");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body["users"], json!(["lisi"]));
    assert!(
        store
            .deliveries_of(&pk)
            .await
            .unwrap()
            .iter()
            .all(|d| d.status == Status::Sent)
    );
}
