//! Lambda adapters: API Gateway v2 requests ↔ the ingress pipeline, DynamoDB stream records →
//! the sender loop, the schedule → the sweeper. Each function's `main.rs` calls one of these.

use std::sync::Arc;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request as HttpRequest, RequestExt, Response as HttpResponse};
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::Value;
use tracing::{error, warn};

use crate::app::{App, Parts};
use crate::config::{Config, Secrets};
use crate::delivery::{FollowUps, sweep};
use crate::event::{DeliveryKey, Status, now_ms};
use crate::ingress::{Request, request_id};
use crate::preflight::Check;
use crate::store::DeliveryStore;
use crate::store::dynamodb::DynamoStore;

pub type Error = lambda_runtime::Error;

/// The variable naming the config file; the stack sets it to its config layer's file.
pub const CONFIG_FILE_VAR: &str = "HOOKBRIDGE_CONFIG_FILE";

/// The config, read once per cold start: the file `HOOKBRIDGE_CONFIG_FILE` names (the stack
/// sets `/opt/hookbridge.toml`, from its config layer: no size limit, versioned with each
/// deploy), else the TOML text in `HOOKBRIDGE_CONFIG` (tests and one-off functions).
pub fn config_from_env() -> Result<Config, Error> {
    let text = match std::env::var_os(CONFIG_FILE_VAR) {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{CONFIG_FILE_VAR}={}: {e} (the stack's config layer puts the config at \
                 /opt/hookbridge.toml)",
                path.to_string_lossy()
            )
        })?,
        None => std::env::var("HOOKBRIDGE_CONFIG").map_err(|_| {
            format!("no config: set {CONFIG_FILE_VAR} to a TOML file, or HOOKBRIDGE_CONFIG to the TOML itself")
        })?,
    };
    Ok(Config::from_toml(&text)?)
}

/// The config (see [`config_from_env`]) and the store on `TABLE_NAME`.
pub async fn store_from_env() -> Result<(Config, DynamoStore), Error> {
    let config = config_from_env()?;
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let store = DynamoStore::from_env(table, config.store.retention()).await;
    Ok((config, store))
}

/// The app from the environment, with only the `parts` this function runs. Says where the
/// cold start's time went (Lambda reports only the sum, as "Init Duration").
pub async fn app_from_env(parts: Parts) -> Result<Arc<App>, Error> {
    let started = std::time::Instant::now();
    let (config, store) = store_from_env().await?;
    let config_and_store_ms = started.elapsed().as_secs_f64() * 1000.0;
    let app = App::build(config, Arc::new(store), &Secrets::default(), parts).await?;
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        config_and_store_ms,
        parts_ms = total_ms - config_and_store_ms,
        "ready"
    );
    Ok(Arc::new(app))
}

/// A webhook function for one source: every API Gateway request through the pipeline.
pub async fn run_webhook(source: &'static str) -> Result<(), Error> {
    crate::logging::init_lambda();
    let app = app_from_env(Parts::Source(source)).await?;
    lambda_http::run(lambda_http::service_fn(|req| http(&app, req))).await
}

/// One API Gateway request through the pipeline.
pub async fn http(app: &App, req: HttpRequest) -> Result<HttpResponse<Body>, Error> {
    // Lambda's request id: it is on every log line of this invocation too.
    let id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_else(request_id);
    // A named stage (not `$default`) prefixes the path with exactly `/<stage>`; it is known from
    // API Gateway's own context, so it is removed exactly, never matched loosely.
    let (stage, peer) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => (
            c.stage.clone().filter(|s| s != "$default"),
            c.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
        ),
        // Behind the static-IP front (NLB → ALB): the ALB appends the address it was reached
        // from to X-Forwarded-For, after whatever the client claimed.
        Some(RequestContext::Alb(_)) => (
            None,
            req.headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|ip| ip.trim().parse().ok()),
        ),
        _ => (None, None),
    };
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let path = stage
        .and_then(|s| path.strip_prefix(&format!("/{s}")).map(str::to_owned))
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| path.to_owned());
    let req = Request {
        id,
        method: parts.method,
        path,
        headers: parts.headers,
        peer,
        body: Bytes::copy_from_slice(body.as_ref()),
    };
    let resp = app.ingress.handle(req, now_ms()).await;
    crate::metrics::flush();
    Ok(HttpResponse::builder()
        .status(resp.status)
        .header("content-type", "application/json")
        .body(Body::Text(resp.body))?)
}

#[derive(Deserialize)]
struct StreamImage {
    status: Option<Status>,
    connector: Option<String>,
    /// Present once the delivery was sent: a pending one is back for its follow-up. Whatever
    /// its type: only whether it is there decides.
    result: Option<serde::de::IgnoredAny>,
}

/// What a sender function is invoked with: a batch of the table's stream, or an operator's
/// `hookbridge check --online --from-stack` (a direct invocation, so that the systems see the
/// address the function calls from).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum SenderEvent {
    Preflight {
        preflight: PreflightAsk,
    },
    /// Deliveries due to be checked, handed on by the sweeper (`SweeperInvoke`).
    FollowUp {
        follow_up: Vec<DeliveryKey>,
    },
    Stream(StreamEvent),
}

/// The preflight's options, as `hookbridge check` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct PreflightAsk {
    #[serde(default)]
    pub send_test: bool,
    pub max_users: usize,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum SenderAnswer {
    Stream(DynamoDbEventResponse),
    Preflight { checks: Vec<Check> },
    FollowUp { checked: usize },
}

/// A sender function for one connector: every stream batch through the sender loop, and the
/// connector's preflight when an operator asks for it.
pub async fn run_sender(connector: &'static str) -> Result<(), Error> {
    crate::logging::init_lambda();
    let app = app_from_env(Parts::Connector(connector)).await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| sender(&app, event))).await
}

/// Dispatches a sender function's invocation.
pub async fn sender(app: &App, event: LambdaEvent<SenderEvent>) -> Result<SenderAnswer, Error> {
    let (payload, context) = event.into_parts();
    match payload {
        SenderEvent::Stream(batch) => {
            let answer = stream(app, LambdaEvent::new(batch, context)).await?;
            Ok(SenderAnswer::Stream(answer))
        }
        SenderEvent::Preflight { preflight: ask } => {
            let checks = app.preflight(ask.send_test, ask.max_users).await;
            Ok(SenderAnswer::Preflight { checks })
        }
        SenderEvent::FollowUp { follow_up: keys } => {
            let (mut checked, mut unrecorded) = (0, 0);
            for key in &keys {
                match app.sender.follow_up(key).await {
                    Ok(done) => checked += usize::from(done.is_some()),
                    Err(e) => {
                        error!(delivery = %key, error = %e, "follow-up's outcome not recorded; the next sweep hands it on again");
                        unrecorded += 1;
                    }
                }
            }
            crate::connectors::flush_calls().await;
            crate::metrics::flush();
            if unrecorded > 0 {
                return Err(
                    format!("{unrecorded} of {} follow-ups not recorded", keys.len()).into(),
                );
            }
            Ok(SenderAnswer::FollowUp { checked })
        }
    }
}

/// Every pending delivery in the batch through the sender loop. Connector
/// failures are recorded on the delivery (retrying/dead) and never fail the batch; only a
/// failure to record an outcome is reported, so that Lambda retries just that record.
pub async fn stream(
    app: &App,
    event: LambdaEvent<StreamEvent>,
) -> Result<DynamoDbEventResponse, Error> {
    let mut failures = vec![];
    for record in event.payload.records {
        let change = record.change;
        // The mapping's filter already passes only this sender's pending deliveries; checking
        // again means a misconfigured filter cannot make one sender claim (and kill) another's.
        let image = serde_dynamo::from_item::<_, StreamImage>(change.new_image).ok();
        let Some(image) = image.filter(|i| {
            i.status == Some(Status::Pending)
                && i.connector.as_ref().is_some_and(|c| app.sender.handles(c))
        }) else {
            continue;
        };
        let key: DeliveryKey = match serde_dynamo::from_item(change.keys) {
            Ok(k) => k,
            Err(e) => {
                warn!(error = %e, "stream record without pk/sk keys; ignored");
                continue;
            }
        };
        let done = if image.result.is_some() {
            app.sender.follow_up(&key).await
        } else {
            app.sender.process(&key).await
        };
        if let Err(e) = done {
            error!(delivery = %key, error = %e, "outcome not recorded; reporting the record as failed");
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = change.sequence_number;
            failures.push(failure);
        }
    }
    // Counts first: writing them publishes DingTalk's share of its quota.
    crate::connectors::flush_calls().await;
    crate::metrics::flush();
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}

/// `retry-sweeper`: every scheduled run, due deliveries re-queued, and due follow-ups handed to
/// their sender functions.
#[cfg(feature = "sweeper")]
pub async fn run_sweeper() -> Result<(), Error> {
    crate::logging::init_lambda();
    let (_, store) = store_from_env().await?;
    let invoke = SweeperInvoke::from_env(|name| std::env::var(name).ok());
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        sweeper(&store, invoke.as_ref().map(|i| i as _), event)
    }))
    .await
}

/// One sweep. A store failure fails the invocation; the next scheduled run picks up where it
/// left off.
pub async fn sweeper(
    store: &dyn DeliveryStore,
    follow_ups: Option<&dyn FollowUps>,
    _event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let swept = sweep(store, now_ms(), 500, follow_ups).await?;
    Ok(serde_json::to_value(swept)?)
}

/// The variable naming each connector's sender function that checks its follow-ups
/// (`dingtalk=<function>`, space-separated); the stack sets it.
#[cfg(feature = "sweeper")]
pub const FOLLOW_UP_FUNCTIONS_VAR: &str = "HOOKBRIDGE_FOLLOW_UP_FUNCTIONS";

/// Due follow-ups to the connector's sender function, invoked asynchronously with their keys:
/// no re-queue written, no stream record. A failed invoke leaves them to be re-queued.
#[cfg(feature = "sweeper")]
pub struct SweeperInvoke {
    client: aws_sdk_lambda::Client,
    functions: std::collections::HashMap<String, String>,
}

#[cfg(feature = "sweeper")]
impl SweeperInvoke {
    /// From [`FOLLOW_UP_FUNCTIONS_VAR`] and the AWS settings `var` looks up (the environment,
    /// as [`crate::http::env_config`] reads it); `None` when it names no function.
    pub fn from_env(
        var: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Option<SweeperInvoke> {
        let functions: std::collections::HashMap<String, String> = var(FOLLOW_UP_FUNCTIONS_VAR)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(c, f)| (c.to_owned(), f.to_owned()))
            .collect();
        if functions.is_empty() {
            return None;
        }
        let client = aws_sdk_lambda::Client::new(&crate::http::env_config(var));
        Some(SweeperInvoke { client, functions })
    }
}

#[cfg(feature = "sweeper")]
#[async_trait::async_trait]
impl FollowUps for SweeperInvoke {
    async fn hand_off(&self, connector: &str, keys: &[DeliveryKey]) -> bool {
        let Some(function) = self.functions.get(connector) else {
            return false;
        };
        let payload = serde_json::json!({ "follow_up": keys }).to_string();
        let sent = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await;
        match sent {
            Ok(_) => true,
            Err(e) => {
                warn!(function = %function, error = %aws_sdk_lambda::error::DisplayErrorContext(e), "could not hand follow-ups on; re-queueing them");
                false
            }
        }
    }
}
