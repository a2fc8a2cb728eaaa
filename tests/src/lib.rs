//! Shared pieces of the integration tests: fixtures, configs, a harness that runs the pipeline
//! in-process, DynamoDB Local, and the fake DingTalk server.

pub mod allowlist;
pub mod events;
pub mod fake_cloudformation;
pub mod fake_dingtalk;
pub mod fake_feishu;
pub mod fake_feishu_robot;
pub mod fake_govding;
pub mod fake_lambda;
pub mod fake_robot;
pub mod fake_runtime;
pub mod fake_secrets;
pub mod fake_wecom;
pub mod fake_wecom_robot;
pub mod fake_zentao;
pub mod forgeries;
pub mod fuzz;
pub mod meter;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets};
use hookbridge::delivery::sweep;
use hookbridge::event::{Delivery, DeliveryKey, Status, now_ms};
use hookbridge::ingress::{Request, Response};
use hookbridge::store::dynamodb::{DynamoStore, sdk};
use hookbridge::store::memory::MemoryStore;
use hookbridge::store::{HistoryStore, Store};
use tokio::sync::mpsc::UnboundedReceiver;

pub const HAP_TOKEN: &str = "test-hap-token";
/// The 浙政钉 callback's path token (`/govding/<token>`): the only thing that authenticates a
/// callback, so it is a secret like any other.
pub const GOVDING_PATH_TOKEN: &str = "gw-path-token-0123456789";

/// Every secret the tests configure or the fakes issue (their access tokens by prefix): none may
/// appear in a log line or an answer.
pub const SECRETS: &[&str] = &[
    HAP_TOKEN,
    GOVDING_PATH_TOKEN,
    fake_dingtalk::APP_SECRET,
    "fake-token-",
    fake_zentao::KEY,
    fake_zentao::READER_PASSWORD,
    fake_govding::APP_SECRET,
    fake_govding::TOKEN,
    fake_robot::TOKEN,
    fake_robot::SECRET,
    fake_wecom::SECRET,
    "wecom-token-",
    fake_wecom_robot::KEY,
    fake_feishu::APP_SECRET,
    "t-fake-",
    fake_feishu_robot::TOKEN,
    fake_feishu_robot::SECRET,
    forgeries::KEY,
];

/// Fails when `text` (a log, an answer) holds any of [`SECRETS`].
pub fn assert_no_secret(what: &str, text: &str) {
    let found: Vec<&str> = SECRETS
        .iter()
        .copied()
        .filter(|s| text.contains(s))
        .collect();
    assert!(
        found.is_empty(),
        "{what} says the secret(s) {found:?}:\n{text}"
    );
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An Alertmanager fixture as Alertmanager would send it now: its alerts started a minute before
/// this process first asked (the same start in every fixture), so no repeat window has passed
/// and a test does not change with the wall clock.
pub fn alerts_now(name: &str) -> String {
    static START: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        (chrono::Utc::now() - chrono::Duration::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    fixture(name).replace("2026-12-07T02:34:00Z", start)
}

/// Config text with HAP → DingTalk. `dingtalk_url`: live against that server, else dry-run.
/// `extra` is appended inside `[connectors.dingtalk]` (key lines first, then any tables).
/// Sends are not followed up unless `extra` sets `follow_up`: most tests are about the send.
pub fn config_text(dingtalk_url: Option<&str>, extra: &str) -> String {
    let follow_up = if extra.contains("follow_up =") {
        ""
    } else {
        "follow_up = \"off\"\n"
    };
    let credentials = dingtalk_url.map_or(String::new(), |url| {
        format!(
            "app_key = \"{}\"\napp_secret = \"plain:{}\"\nbase_url = \"{url}\"\n",
            fake_dingtalk::APP_KEY,
            fake_dingtalk::APP_SECRET
        )
    });
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
sweep_interval_secs = 1

[sources.hap]
tokens = ["plain:{HAP_TOKEN}"]

[[routes]]
source = "hap"
connector = "dingtalk"

[connectors.dingtalk]
agent_id = {}
{credentials}{follow_up}
{extra}
"#,
        fake_dingtalk::AGENT_ID
    )
}

pub fn config(dingtalk_url: Option<&str>, extra: &str) -> Config {
    let text = config_text(dingtalk_url, extra);
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

pub fn request(path: &str, body: impl Into<Bytes>, token: Option<&str>) -> Request {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    if let Some(t) = token {
        headers.insert("x-hookbridge-token", t.parse().unwrap());
    }
    Request {
        id: hookbridge::ingress::request_id(),
        method: http::Method::POST,
        path: path.to_owned(),
        headers,
        peer: None,
        body: body.into(),
    }
}

/// The pipeline in-process on the in-memory store, with its change feed.
pub struct Harness {
    pub app: Arc<App>,
    feed: UnboundedReceiver<DeliveryKey>,
}

impl Harness {
    pub async fn new(config: Config) -> Harness {
        let (store, feed) = MemoryStore::with_feed();
        let app = App::build(config, Arc::new(store), &Secrets::default(), Parts::All)
            .await
            .unwrap();
        Harness {
            app: Arc::new(app),
            feed,
        }
    }

    pub async fn post(&self, path: &str, body: &str) -> Response {
        self.post_at(path, body, now_ms()).await
    }

    /// As [`Harness::post`], received at `now` (what messages show as the time when the
    /// source gives none).
    pub async fn post_at(
        &self,
        path: &str,
        body: &str,
        now: hookbridge::event::Millis,
    ) -> Response {
        let req = request(path, body.to_owned(), Some(HAP_TOKEN));
        self.app.ingress.handle(req, now).await
    }

    /// The next delivery the feed announced, without processing it.
    pub fn next_key(&mut self) -> Option<DeliveryKey> {
        self.feed.try_recv().ok()
    }

    /// Processes announced deliveries until none is left; returns the statuses they reached.
    pub async fn drain(&mut self) -> Vec<Status> {
        let mut out = vec![];
        while let Some(key) = self.next_key() {
            if let Some(status) = self.app.sender.process(&key).await.unwrap() {
                out.push(status);
            }
        }
        out
    }

    /// Runs the sweeper as if `secs` had passed, then drains.
    pub async fn sweep_after(&mut self, secs: i64) -> Vec<Status> {
        sweep(self.app.store.as_ref(), now_ms() + secs * 1000, 1000, None)
            .await
            .unwrap();
        self.drain().await
    }

    /// Drains, then sweeps (as if `secs` passed each time, at most `sweeps` times) until the
    /// statuses reached are exactly `want`; returns the last statuses seen.
    pub async fn sweep_until(&mut self, want: &[Status], secs: i64, sweeps: usize) -> Vec<Status> {
        let mut last = self.drain().await;
        for _ in 0..sweeps {
            if last == want {
                break;
            }
            last = self.sweep_after(secs).await;
        }
        last
    }

    pub async fn deliveries(&self, event_pk: &str) -> Vec<Delivery> {
        self.app.store.deliveries_of(event_pk).await.unwrap()
    }

    /// The calls `account` (`<connector>#<app>`) made this month, as `hookbridge status` shows
    /// them once they are flushed: once `want` of them are written (another test's flush may
    /// be the one writing them: waited for, 1 s), or the last count seen.
    pub async fn calls_counted(&self, account: &str, want: u64) -> u64 {
        let month = hookbridge::event::beijing_month(now_ms());
        let mut calls = 0;
        for _ in 0..50 {
            hookbridge::connectors::flush_calls().await;
            let usage = self.app.store.usage_in(&month).await.unwrap();
            calls = usage
                .iter()
                .find(|u| u.name == account)
                .map_or(0, |u| u.calls);
            if calls == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        calls
    }
}

/// A reqwest client built as the connectors build theirs (rustls on ring: reqwest carries no
/// crypto provider of its own).
pub fn http_client() -> reqwest::Client {
    hookbridge::http::client(Duration::from_secs(30)).expect("an HTTP client")
}

/// DynamoDB Local's endpoint, started by `scripts/test` (or set by hand).
pub fn dynamodb_endpoint() -> String {
    std::env::var("HOOKBRIDGE_TEST_DYNAMODB").unwrap_or_else(|_| {
        panic!(
            "HOOKBRIDGE_TEST_DYNAMODB is not set. Run the tests with ./scripts/test, which \
             installs and starts DynamoDB Local, or start it yourself and set the variable to \
             its endpoint (e.g. http://127.0.0.1:8000)"
        )
    })
}

pub fn dynamo_client(endpoint: &str) -> sdk::Client {
    let config = sdk::Config::builder()
        .http_client(hookbridge::http::aws_client())
        .behavior_version(sdk::config::BehaviorVersion::latest())
        .region(sdk::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(sdk::config::Credentials::new("x", "x", None, None, "test"))
        .retry_config(sdk::config::retry::RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            sdk::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    sdk::Client::from_conf(config)
}

/// A store on a fresh table of its own in DynamoDB Local.
pub async fn dynamo_store() -> DynamoStore {
    let client = dynamo_client(&dynamodb_endpoint());
    let table = format!("hookbridge-test-{:016x}", fastrand::u64(..));
    DynamoStore::create_table(&client, &table).await.unwrap();
    DynamoStore::new(client, table, Duration::from_secs(30 * 86_400))
}

/// A store whose endpoint refuses connections: DynamoDB down.
pub async fn unreachable_store() -> DynamoStore {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = dynamo_client(&format!("http://127.0.0.1:{port}"));
    DynamoStore::new(client, "nowhere", Duration::from_secs(86_400))
}

/// `App` over any store (for the DynamoDB-backed tests).
pub async fn app_on(config: Config, store: Arc<dyn Store>) -> Arc<App> {
    Arc::new(
        App::build(config, store, &Secrets::default(), Parts::All)
            .await
            .unwrap(),
    )
}

/// The environment a function binary gets in the SAM stack, pointed at DynamoDB Local and,
/// with `dingtalk_url`, at a fake DingTalk; `extra` as for [`config_text`].
pub fn lambda_env(
    table: &str,
    dingtalk_url: Option<&str>,
    extra: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("HOOKBRIDGE_CONFIG", config_text(dingtalk_url, extra)),
        ("TABLE_NAME", table.to_owned()),
        ("AWS_ENDPOINT_URL", dynamodb_endpoint()),
        ("AWS_ACCESS_KEY_ID", "x".into()),
        ("AWS_SECRET_ACCESS_KEY", "x".into()),
        // Every series, for the tests to read; the stack's default (`essential`) is tested apart.
        ("HOOKBRIDGE_METRICS", "full".into()),
    ]
}

/// Stores `fixture` posted to `path` through an app on `store` built from `config`, as a webhook
/// function does, now.
pub async fn ingest(store: &DynamoStore, config: Config, path: &str, fixture_name: &str) {
    let app = app_on(config, Arc::new(store.clone())).await;
    let req = request(path, fixture(fixture_name), Some(HAP_TOKEN));
    let answer = app.ingress.handle(req, now_ms()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// The HAP to-do fixture (a card for each of two people) stored on `store` and sent to the fake
/// DingTalk at `dingtalk_url` with `extra` config (a follow-up on): both sends left `checking`.
/// Returns the app that sent them and the two deliveries' keys.
pub async fn sent_to_be_checked(
    store: &DynamoStore,
    dingtalk_url: &str,
    extra: &str,
) -> (Arc<App>, Vec<DeliveryKey>) {
    let app = app_on(config(Some(dingtalk_url), extra), Arc::new(store.clone())).await;
    let req = request(
        "/hap/message",
        fixture("hap-message-todo.json"),
        Some(HAP_TOKEN),
    );
    let answer = app.ingress.handle(req, now_ms()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let pk = "EVT#hap#8d3e6f1a-4c2b-4a9e-b7d5-0f1e2a3b4c5d";
    let keys: Vec<DeliveryKey> = store
        .deliveries_of(pk)
        .await
        .unwrap()
        .iter()
        .map(Delivery::key)
        .collect();
    assert_eq!(keys.len(), 2, "a card for each of two people");
    for key in &keys {
        assert_eq!(
            app.sender.process(key).await.unwrap(),
            Some(Status::Checking)
        );
    }
    (app, keys)
}

/// Runs the function `binary` as Lambda runs it on a stream batch of `items` (event name, pk,
/// sk) of `table`, and fails unless every record succeeded; returns its log.
pub async fn run_stream(
    binary: &str,
    env: &[(&str, String)],
    table: &str,
    items: &[(&str, &str, &str)],
) -> String {
    let batch = events::stream_batch(table, items).await;
    let (answer, logs) = fake_runtime::invoke(binary, env, batch).await;
    assert_eq!(
        answer,
        fake_runtime::Answer::Response(serde_json::json!({"batchItemFailures": []})),
        "{logs}"
    );
    logs
}

/// A sender `binary` run as Lambda runs it, on a stream batch that a filter gone wrong fills:
/// the HAP mention fixture (routed by `extra` to `connector`) has a DingTalk delivery, not the
/// sender's, and its own delivery twice (inserted, then modified). Returns the log and what
/// became of each delivery: the sender should send its own once and leave the other pending.
pub async fn sender_takes_its_own(
    binary: &str,
    extra: &str,
    connector: &str,
) -> (String, Vec<(String, Status)>) {
    let store = dynamo_store().await;
    let table = store.table().to_owned();
    ingest(
        &store,
        config(None, extra),
        "/hap/message",
        "hap-message-mention.json",
    )
    .await;
    let pk = "EVT#hap#9f8e7d6c-5b4a-4392-8171-6f5e4d3c2b1a";
    let own = format!("DLV#{connector}#000");
    let items = [
        ("INSERT", pk, "DLV#dingtalk#000"),
        ("INSERT", pk, own.as_str()),
        ("MODIFY", pk, own.as_str()),
    ];
    let env = lambda_env(&table, None, extra);
    let logs = run_stream(binary, &env, &table, &items).await;
    (logs, statuses(&store, pk).await)
}

/// `(connector, status)` of the deliveries of the event `pk`, in order.
pub async fn statuses(store: &DynamoStore, pk: &str) -> Vec<(String, Status)> {
    store
        .deliveries_of(pk)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.connector, d.status))
        .collect()
}

/// The Embedded Metric Format data points of `metric` in a function's log, each as the value
/// and its dimensions (name → value), checked to be what CloudWatch extracts: namespace
/// `hookbridge`, every dimension named in a dimension set present on the line.
pub fn emf(logs: &str, metric: &str) -> Vec<(serde_json::Value, Vec<(String, String)>)> {
    let mut points = vec![];
    for line in logs.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(directives) = v["_aws"]["CloudWatchMetrics"].as_array() else {
            continue;
        };
        assert!(v["_aws"]["Timestamp"].is_i64(), "{line}");
        for d in directives {
            if !d["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["Name"] == metric)
            {
                continue;
            }
            assert_eq!(d["Namespace"], "hookbridge", "{line}");
            let mut dims = vec![];
            for set in d["Dimensions"].as_array().unwrap() {
                for key in set.as_array().unwrap() {
                    let key = key.as_str().unwrap();
                    let value = v[key]
                        .as_str()
                        .unwrap_or_else(|| panic!("no {key} in {line}"));
                    dims.push((key.to_owned(), value.to_owned()));
                }
            }
            points.push((v[metric].clone(), dims));
        }
    }
    points
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "says the secret(s) [\"test-hap-token\"]")]
    fn a_secret_in_a_log_line_is_caught() {
        super::assert_no_secret("a log", "request refused token=test-hap-token");
    }
}
