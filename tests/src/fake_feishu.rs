//! A fake Feishu open platform on 127.0.0.1 that does what Feishu's server API docs say (and
//! where they are silent, what is marked so): `tenant_access_token/internal` (app id and secret
//! checked, 7200 s tokens, 10014), `Authorization: Bearer` on every call (99991663 invalid or
//! expired), `im/v1/messages` (`receive_id_type` and a known `receive_id`, else 230001;
//! 230013 for someone outside the app's availability; `content` a JSON string; a `uuid` seen
//! within the hour is the same message), `PATCH` of a card (interactive, `update_multi` before
//! and after, not recalled: 230011), `DELETE` (recall).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const APP_ID: &str = "cli_fake0123456789";
pub const APP_SECRET: &str = "fake-feishu-app-secret";
/// The open_ids the app reaches.
pub const USERS: &[&str] = &["ou_zhangsan", "ou_lisi", "ou_ops1"];
/// A real person outside the app's availability: 230013.
pub const UNAVAILABLE: &str = "ou_outside";
pub const CHAT: &str = "oc_fakechat";

#[derive(Debug, Clone)]
pub struct Shown {
    pub message_id: String,
    pub receive_id: String,
    pub msg_type: String,
    /// `content`, parsed; changed by each `PATCH`.
    pub content: Value,
    pub patches: usize,
    pub recalled: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<(String, String, Value)>,
    tokens: HashSet<String>,
    expired: HashSet<String>,
    issued: usize,
    shown: Vec<Shown>,
    uuids: HashMap<String, usize>,
    /// The share of message calls answered HTTP 500 before they do anything.
    fail_ratio: f64,
    /// Message calls a second beyond which Feishu answers 429 (99991400); 0: no limit.
    qps_limit: usize,
    recent: VecDeque<Instant>,
    /// When each receiver was last sent messages, for Feishu's 5 a second to one user or chat.
    received: HashMap<String, VecDeque<Instant>>,
    /// Sends refused for that limit.
    refused: usize,
    /// Messages a second to one receiver (Feishu's 5; 0 also means 5).
    receiver_limit: usize,
}

#[derive(Clone)]
pub struct FakeFeishu {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The app's IP whitelist (unconfirmed code 99991401 for others).
    pub allowlist: Allowlist,
}

fn err(status: StatusCode, code: i64, msg: &str) -> (StatusCode, axum::Json<Value>) {
    (
        status,
        axum::Json(json!({ "code": code, "msg": msg, "error": { "log_id": "fake" } })),
    )
}

fn not_listed(_: std::net::IpAddr) -> axum::response::Response {
    use axum::response::IntoResponse;
    err(StatusCode::BAD_REQUEST, 99991401, "ip not in whitelist").into_response()
}

/// `[connectors.feishu]` for this server, HAP's ids mapped to open_ids, and a route from HAP
/// (last, so that keys appended after it are the route's).
pub fn hap_route(url: &str) -> String {
    format!(
        "\n[connectors.feishu]\napp_id = \"{APP_ID}\"\napp_secret = \"plain:{APP_SECRET}\"\nbase_url = \"{url}\"\n\n\
         [recipients.feishu.map]\nmanager4220 = \"ou_zhangsan\"\n\"0147282552401293909\" = \"ou_lisi\"\nwangwu_2231 = \"ou_ops1\"\nlisi = \"ou_lisi\"\n\n\
         [[routes]]\nsource = \"hap\"\nconnector = \"feishu\"\n"
    )
}

impl FakeFeishu {
    pub async fn start() -> FakeFeishu {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/open-apis/{*path}", any(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeFeishu {
            url,
            inner,
            allowlist,
        }
    }

    pub fn expire_tokens(&self) {
        let mut inner = self.inner.lock().unwrap();
        let tokens: Vec<String> = inner.tokens.drain().collect();
        inner.expired.extend(tokens);
    }

    pub fn set_fail_ratio(&self, ratio: f64) {
        self.inner.lock().unwrap().fail_ratio = ratio;
    }

    /// Messages a second to one receiver, as a private deployment might allow.
    pub fn set_receiver_limit(&self, per_second: usize) {
        self.inner.lock().unwrap().receiver_limit = per_second;
    }

    /// Sends refused for the 5 a second to one receiver.
    pub fn refused(&self) -> usize {
        self.inner.lock().unwrap().refused
    }

    pub fn set_qps_limit(&self, qps: usize) {
        self.inner.lock().unwrap().qps_limit = qps;
    }

    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().unwrap().issued
    }

    /// `(method, path, body)` of every call.
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn shown(&self) -> Vec<Shown> {
        self.inner.lock().unwrap().shown.clone()
    }
}

/// Feishu's answer to a call over a frequency limit carries how long the limit's window takes
/// to recover, in seconds (the API call guide's "Rate limits" page): 1 for a per-second limit.
async fn handle(
    s: State<Arc<Mutex<Inner>>>,
    method: Method,
    path: Path<String>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (status, answer) = answer(s, method, path, q, headers, body).await;
    let throttled = answer["code"] == 99991400;
    let mut response = (status, answer).into_response();
    if throttled {
        let reset = axum::http::HeaderValue::from_static("1");
        response
            .headers_mut()
            .insert("x-ogw-ratelimit-reset", reset);
    }
    response
}

async fn answer(
    State(s): State<Arc<Mutex<Inner>>>,
    method: Method,
    Path(path): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let mut inner = s.lock().unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner
        .calls
        .push((method.to_string(), path.clone(), body.clone()));
    if path == "auth/v3/tenant_access_token/internal" {
        if body["app_id"] != APP_ID || body["app_secret"] != APP_SECRET {
            return err(StatusCode::BAD_REQUEST, 10014, "app secret invalid");
        }
        inner.issued += 1;
        let token = format!("t-fake-{}", inner.issued);
        inner.tokens.insert(token.clone());
        return (
            StatusCode::OK,
            axum::Json(
                json!({ "code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200 }),
            ),
        );
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    if !inner.tokens.contains(&token) {
        let why = if inner.expired.contains(&token) {
            "Invalid access token for authorization"
        } else {
            "Missing access token for authorization"
        };
        return err(StatusCode::BAD_REQUEST, 99991663, why);
    }
    if inner.fail_ratio > 0.0 && fastrand::f64() < inner.fail_ratio {
        return err(StatusCode::INTERNAL_SERVER_ERROR, 1500, "internal error");
    }
    if inner.qps_limit > 0 {
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            inner.recent.pop_front();
        }
        if inner.recent.len() >= inner.qps_limit {
            return err(
                StatusCode::TOO_MANY_REQUESTS,
                99991400,
                "request trigger frequency limit",
            );
        }
        inner.recent.push_back(now);
    }
    let ok = |data: Value| {
        (
            StatusCode::OK,
            axum::Json(json!({ "code": 0, "msg": "success", "data": data })),
        )
    };
    match (method.as_str(), path.strip_prefix("im/v1/messages")) {
        ("POST", Some("")) => {
            let kind = q.get("receive_id_type").map(String::as_str).unwrap_or("");
            let id = body["receive_id"].as_str().unwrap_or("").to_owned();
            let known = match kind {
                "open_id" => USERS.contains(&id.as_str()) || id == UNAVAILABLE,
                "chat_id" => id == CHAT,
                _ => false,
            };
            if !known {
                return err(
                    StatusCode::BAD_REQUEST,
                    230001,
                    "Your request contains an invalid request parameter, ext=invalid receive_id.",
                );
            }
            if id == UNAVAILABLE {
                return err(
                    StatusCode::BAD_REQUEST,
                    230013,
                    "Bot has NO availability to this user.",
                );
            }
            let now = Instant::now();
            let limit = inner.receiver_limit.max(5);
            let times = inner.received.entry(id.clone()).or_default();
            times.retain(|t| now.duration_since(*t) < Duration::from_secs(1));
            if times.len() >= limit {
                inner.refused += 1;
                return err(
                    StatusCode::BAD_REQUEST,
                    230020,
                    "This operation triggers the frequency limit.",
                );
            }
            times.push_back(now);
            let msg_type = body["msg_type"].as_str().unwrap_or("").to_owned();
            let Some(content) = body["content"]
                .as_str()
                .and_then(|c| serde_json::from_str::<Value>(c).ok())
            else {
                return err(
                    StatusCode::BAD_REQUEST,
                    230001,
                    "Your request contains an invalid request parameter, ext=content is not a JSON string.",
                );
            };
            if let Some(uuid) = body["uuid"].as_str()
                && let Some(&i) = inner.uuids.get(uuid)
            {
                let id = inner.shown[i].message_id.clone();
                return ok(json!({ "message_id": id }));
            }
            let message_id = format!("om_fake{}", inner.shown.len() + 1);
            if let Some(uuid) = body["uuid"].as_str() {
                let i = inner.shown.len();
                inner.uuids.insert(uuid.to_owned(), i);
            }
            inner.shown.push(Shown {
                message_id: message_id.clone(),
                receive_id: id,
                msg_type,
                content,
                patches: 0,
                recalled: false,
            });
            ok(json!({ "message_id": message_id }))
        }
        (m @ ("PATCH" | "DELETE"), Some(rest)) => {
            let id = rest.trim_start_matches('/');
            let Some(shown) = inner.shown.iter_mut().find(|s| s.message_id == id) else {
                return err(
                    StatusCode::BAD_REQUEST,
                    230001,
                    "Your request contains an invalid request parameter, ext=invalid message_id.",
                );
            };
            if shown.recalled {
                return err(StatusCode::BAD_REQUEST, 230011, "The message is recalled.");
            }
            if m == "DELETE" {
                shown.recalled = true;
                return ok(json!({}));
            }
            let new: Option<Value> = body["content"]
                .as_str()
                .and_then(|c| serde_json::from_str(c).ok());
            match new {
                Some(card)
                    if shown.msg_type == "interactive"
                        && shown.content["config"]["update_multi"] == true
                        && card["config"]["update_multi"] == true =>
                {
                    shown.content = card;
                    shown.patches += 1;
                    ok(json!({}))
                }
                _ => err(
                    StatusCode::BAD_REQUEST,
                    230001,
                    "Your request contains an invalid request parameter, ext=card must be shared (update_multi) before and after.",
                ),
            }
        }
        _ => err(StatusCode::NOT_FOUND, 404, "not found"),
    }
}
