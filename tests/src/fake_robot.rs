//! A fake DingTalk group robot on 127.0.0.1 (`POST /robot/send?access_token=…`) that enforces
//! what the robot does: HTTP 200 with `errcode`, the token in the query, 加签 (`timestamp`
//! within an hour, `sign` over `timestamp\nsecret`) answered 310000 when wrong, the keyword
//! answered 310000 when missing, 20 messages a minute answered 410100, `msgUuid` seen twice
//! posted once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const TOKEN: &str = "fake-robot-token";
pub const SECRET: &str = "SECfake0123456789";

#[derive(Default)]
struct Inner {
    /// Every request's body, accepted or not.
    calls: Vec<Value>,
    /// What the group shows.
    posted: Vec<Value>,
    uuids: HashSet<String>,
    recent: VecDeque<Instant>,
    keyword: Option<String>,
    signed: bool,
}

#[derive(Clone)]
pub struct FakeRobot {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The robot's security setting IP地址（段）: others get 310000 naming their address.
    pub allowlist: Allowlist,
}

fn not_listed(ip: std::net::IpAddr) -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(err(310000, &format!("ip {ip} not in whitelist"))).into_response()
}

fn err(code: i64, msg: &str) -> Value {
    json!({ "errcode": code, "errmsg": msg })
}

impl FakeRobot {
    /// A robot whose security setting is 加签 (`signed`) or a keyword, or neither.
    pub async fn start(signed: bool, keyword: Option<&str>) -> FakeRobot {
        let inner = Arc::new(Mutex::new(Inner {
            signed,
            keyword: keyword.map(str::to_owned),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/robot/send", post(send))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeRobot {
            url: format!("http://{addr}"),
            inner,
            allowlist,
        }
    }

    /// The webhook URL as the robot's settings page shows it.
    pub fn webhook(&self) -> String {
        format!("{}/robot/send?access_token={TOKEN}", self.url)
    }

    pub fn calls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn posted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().posted.clone()
    }
}

async fn send(
    State(s): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let mut inner = s.lock().unwrap();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    inner.calls.push(parsed.clone().unwrap_or(Value::Null));
    let answer = (|| {
        if q.get("access_token").map(String::as_str) != Some(TOKEN) {
            return Err(err(300005, "token is not exist"));
        }
        if inner.signed {
            let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
            let now = hookbridge::event::now_ms();
            if (now - ts).abs() > 3_600_000 {
                return Err(err(310000, "invalid timestamp"));
            }
            if q.get("sign") != Some(&hookbridge::connectors::dingtalk_robot::sign(ts, SECRET)) {
                return Err(err(310000, "sign not match"));
            }
        }
        let json_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let Some(body) = parsed.filter(|_| json_type) else {
            return Err(err(43004, "无效的HTTP HEADER Content-Type"));
        };
        let msgtype = body["msgtype"].as_str().unwrap_or("");
        if !["text", "markdown", "link", "actionCard", "feedCard"].contains(&msgtype)
            || body.get(msgtype).is_none()
        {
            return Err(err(400105, "不支持的消息类型"));
        }
        if let Some(k) = &inner.keyword
            && !body[msgtype].to_string().contains(k.as_str())
        {
            return Err(err(310000, "keywords not in content"));
        }
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            inner.recent.pop_front();
        }
        if inner.recent.len() >= 20 {
            return Err(err(410100, "send too fast, exceed 20 times per minute"));
        }
        inner.recent.push_back(now);
        let uuid = body["msgUuid"].as_str().unwrap_or("").to_owned();
        if uuid.is_empty() || inner.uuids.insert(uuid) {
            inner.posted.push(body);
        }
        Ok(json!({ "errcode": 0, "errmsg": "ok" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e))
}
