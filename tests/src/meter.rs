//! A DynamoDB meter: a proxy on 127.0.0.1 in front of DynamoDB Local that asks every request
//! for `ReturnConsumedCapacity: TOTAL` and adds up what comes back, the way DynamoDB bills it.
//! Point a client (or a function, via `AWS_ENDPOINT_URL`) at [`Meter::url`]. DynamoDB Local
//! does not check signatures, so rewriting the body is harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// What was consumed: capacity units and calls per operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumed {
    pub read_units: f64,
    pub write_units: f64,
    pub calls: BTreeMap<String, usize>,
}

impl Consumed {
    pub fn total_calls(&self) -> usize {
        self.calls.values().sum()
    }

    /// What was consumed since `before`.
    pub fn since(&self, before: &Consumed) -> Consumed {
        let mut calls = self.calls.clone();
        for (op, n) in &before.calls {
            if let Some(c) = calls.get_mut(op) {
                *c -= n;
            }
        }
        calls.retain(|_, n| *n > 0);
        Consumed {
            read_units: self.read_units - before.read_units,
            write_units: self.write_units - before.write_units,
            calls,
        }
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    consumed: Mutex<Consumed>,
}

pub struct Meter {
    pub url: String,
    shared: Arc<Shared>,
}

const READS: &[&str] = &[
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactGetItems",
];

fn units(consumed: Option<&Value>) -> f64 {
    match consumed {
        Some(Value::Array(all)) => all.iter().map(|c| units(Some(c))).sum(),
        Some(c) => c["CapacityUnits"].as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}

async fn forward(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();
    let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(o) = request.as_object_mut()
        && op != "CreateTable"
        && op != "DescribeTable"
    {
        o.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
    }
    let mut up = s.client.post(&s.upstream).body(request.to_string());
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            up = up.header(name, value);
        }
    }
    let Ok(resp) = up.send().await else {
        return (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new());
    };
    let status = resp.status();
    let mut out = HeaderMap::new();
    for (name, value) in resp.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            out.insert(name, value.clone());
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    {
        let mut c = s.consumed.lock().unwrap();
        let spent = units(answer.get("ConsumedCapacity"));
        if READS.contains(&op.as_str()) {
            c.read_units += spent;
        } else {
            c.write_units += spent;
        }
        *c.calls.entry(op).or_default() += 1;
    }
    (status, out, bytes)
}

impl Meter {
    /// A meter in front of `upstream` (DynamoDB Local's endpoint).
    pub async fn start(upstream: &str) -> Meter {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client: crate::http_client(),
            consumed: Mutex::default(),
        });
        let app = Router::new()
            .fallback(axum::routing::post(forward))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Meter { url, shared }
    }

    /// Everything consumed through this meter so far.
    pub fn consumed(&self) -> Consumed {
        self.shared.consumed.lock().unwrap().clone()
    }
}
