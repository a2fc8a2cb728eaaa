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
    /// Calls and write units by operation and the kinds of item it wrote (`UpdateItem DLV`,
    /// `TransactWriteItems EVT+DLV`), for a table of where the units go.
    pub writes: BTreeMap<String, (usize, f64)>,
}

impl Consumed {
    pub fn total_calls(&self) -> usize {
        self.calls.values().sum()
    }

    /// Adds what `more` consumed.
    pub fn add(&mut self, more: &Consumed) {
        self.read_units += more.read_units;
        self.write_units += more.write_units;
        for (op, n) in &more.calls {
            *self.calls.entry(op.clone()).or_default() += n;
        }
        for (what, (n, units)) in &more.writes {
            let w = self.writes.entry(what.clone()).or_default();
            w.0 += n;
            w.1 += units;
        }
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
        let mut writes = self.writes.clone();
        for (what, (n, units)) in &before.writes {
            if let Some(w) = writes.get_mut(what) {
                w.0 -= n;
                w.1 -= units;
            }
        }
        writes.retain(|_, (n, _)| *n > 0);
        Consumed {
            read_units: self.read_units - before.read_units,
            write_units: self.write_units - before.write_units,
            calls,
            writes,
        }
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    consumed: Mutex<Consumed>,
    /// What [`Meter::hold_together`] holds, and how many of those calls are in flight now
    /// and were at most.
    held: Mutex<Held>,
    arrived: tokio::sync::Notify,
}

#[derive(Default)]
struct Held {
    calls: Vec<String>,
    together: usize,
    now: usize,
    most: usize,
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

/// The kind of an item by its keys: the key's first part (`RATE`, `USAGE`, `TOKEN`), or for an
/// event's items the sort key's (`EVT`, `DLV`, `REQ`).
fn kind(item: &Value) -> String {
    let part = |k: &str| {
        let v = item[k]["S"].as_str().unwrap_or("");
        v.split('#').next().unwrap_or("").to_owned()
    };
    match part("pk").as_str() {
        "EVT" => part("sk"),
        other => other.to_owned(),
    }
}

/// What a write call wrote: the kinds of its items, `+`-joined, each once.
fn written(request: &Value) -> String {
    let mut kinds: Vec<String> = vec![];
    let mut add = |item: &Value| {
        let k = kind(item);
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    };
    for one in [&request["Item"], &request["Key"]] {
        if one.is_object() {
            add(one);
        }
    }
    for t in request["TransactItems"].as_array().into_iter().flatten() {
        for op in ["Put", "Update", "Delete", "ConditionCheck"] {
            add(if op == "Put" {
                &t[op]["Item"]
            } else {
                &t[op]["Key"]
            });
        }
    }
    for requests in request["RequestItems"]
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
    {
        for r in requests.as_array().into_iter().flatten() {
            add(if r["PutRequest"].is_object() {
                &r["PutRequest"]["Item"]
            } else {
                &r["DeleteRequest"]["Key"]
            });
        }
    }
    kinds.retain(|k| !k.is_empty());
    kinds.join("+")
}

/// Write units a refused conditional write is billed: DynamoDB bills it like the write (by the
/// item's size; at least one unit, two in a transaction) but returns no consumed capacity.
fn refused_units(request: &Value, answer: &Value) -> f64 {
    let error = answer["__type"].as_str().unwrap_or("");
    if error.ends_with("ConditionalCheckFailedException") {
        1.0
    } else if error.ends_with("TransactionCanceledException") {
        2.0 * request["TransactItems"].as_array().map_or(0, Vec::len) as f64
    } else {
        0.0
    }
}

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
    let _held = InFlight::enter(&s, &format!("{op} {}", written(&request))).await;
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
        } else if op != "CreateTable" && op != "DescribeTable" {
            let spent = spent + refused_units(&request, &answer);
            c.write_units += spent;
            let w = c
                .writes
                .entry(format!("{op} {}", written(&request)))
                .or_default();
            w.0 += 1;
            w.1 += spent;
        }
        *c.calls.entry(op).or_default() += 1;
    }
    (status, out, bytes)
}

/// A held call in flight through the meter, counted until it is answered.
struct InFlight<'a>(Option<&'a Shared>);

impl<'a> InFlight<'a> {
    /// A call `what` (`PutItem DLV`, `GetItem EVT`) of those [`Meter::hold_together`] names
    /// waits (at most 2 s) until that many of them are in flight, so that calls made one
    /// after another never meet here.
    async fn enter(s: &'a Shared, what: &str) -> InFlight<'a> {
        let together = {
            let mut h = s.held.lock().unwrap();
            if !h.calls.iter().any(|c| c == what) {
                return InFlight(None);
            }
            h.now += 1;
            h.most = h.most.max(h.now);
            h.together
        };
        s.arrived.notify_waiters();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            loop {
                let arrived = s.arrived.notified();
                if s.held.lock().unwrap().now >= together {
                    break;
                }
                arrived.await;
            }
        })
        .await;
        InFlight(Some(s))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.held.lock().unwrap().now -= 1;
        }
    }
}

impl Meter {
    /// A meter in front of `upstream` (DynamoDB Local's endpoint).
    pub async fn start(upstream: &str) -> Meter {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client: crate::http_client(),
            consumed: Mutex::default(),
            held: Mutex::default(),
            arrived: Default::default(),
        });
        let app = Router::new()
            .fallback(axum::routing::post(forward))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Meter { url, shared }
    }

    /// From now on each call of `calls` (`PutItem DLV`: the operation and the kinds of item,
    /// as in [`Consumed::writes`]) waits, at most 2 s, until `together` of them are in flight;
    /// [`Meter::most_at_once`] then says whether they went out together or one by one.
    pub fn hold_together(&self, calls: &[&str], together: usize) {
        *self.shared.held.lock().unwrap() = Held {
            calls: calls.iter().map(|c| (*c).to_owned()).collect(),
            together,
            ..Held::default()
        };
    }

    /// The most calls [`Meter::hold_together`] named in flight at once since it was set.
    pub fn most_at_once(&self) -> usize {
        self.shared.held.lock().unwrap().most
    }

    /// Everything consumed through this meter so far.
    pub fn consumed(&self) -> Consumed {
        self.shared.consumed.lock().unwrap().clone()
    }
}
