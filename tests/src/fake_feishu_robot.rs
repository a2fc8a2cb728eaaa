//! A fake Feishu custom bot on 127.0.0.1 (`POST /open-apis/bot/v2/hook/<token>`) that does what
//! Feishu's custom bot guide says the bot does: HTTP 200 with `code`, a wrong token 19001, 签名校验
//! (`timestamp` in seconds within an hour, `sign` as Feishu computes it) 19021, the keyword
//! 19024, its IP whitelist 19022, more than 5 messages a second or 100 a minute 11232, a body
//! over 20 KB refused. A custom bot has no idempotency key: every accepted post shows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use serde_json::{Value, json};

use crate::allowlist::Allowlist;

pub const TOKEN: &str = "fake-feishu-bot-token";
pub const SECRET: &str = "fakeFeishuSecret01";

#[derive(Default)]
struct Inner {
    /// Every request's body, accepted or not.
    calls: Vec<Value>,
    /// What the group shows.
    posted: Vec<Value>,
    recent: VecDeque<Instant>,
    keyword: Option<String>,
    signed: bool,
    /// Posts a minute and a second beyond which it answers 11232 (Feishu's 100 and 5).
    limits: (usize, usize),
    /// The share of posts answered HTTP 502 before they do anything.
    fail_ratio: f64,
}

#[derive(Clone)]
pub struct FakeFeishuRobot {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    /// The bot's IP whitelist: others get 19022.
    pub allowlist: Allowlist,
}

fn err(code: i64, msg: &str) -> Value {
    json!({ "code": code, "data": {}, "msg": msg })
}

fn not_listed(_: std::net::IpAddr) -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(err(19022, "Ip Not Allowed")).into_response()
}

impl FakeFeishuRobot {
    /// A bot whose security setting is 签名校验 (`signed`) or a keyword, or neither.
    pub async fn start(signed: bool, keyword: Option<&str>) -> FakeFeishuRobot {
        let inner = Arc::new(Mutex::new(Inner {
            signed,
            keyword: keyword.map(str::to_owned),
            limits: (100, 5),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/open-apis/bot/v2/hook/{token}", post(send))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let allowlist = Allowlist::default();
        crate::allowlist::serve(listener, app, allowlist.clone(), not_listed);
        FakeFeishuRobot {
            url,
            inner,
            allowlist,
        }
    }

    /// The webhook URL as the bot's settings show it.
    pub fn webhook(&self) -> String {
        format!("{}/open-apis/bot/v2/hook/{TOKEN}", self.url)
    }

    pub fn calls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn posted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().posted.clone()
    }

    /// Posts a minute and a second it takes, for a run that posts more than a group would.
    pub fn set_limits(&self, per_minute: usize, per_second: usize) {
        self.inner.lock().unwrap().limits = (per_minute, per_second);
    }

    pub fn set_fail_ratio(&self, ratio: f64) {
        self.inner.lock().unwrap().fail_ratio = ratio;
    }
}

async fn send(
    State(s): State<Arc<Mutex<Inner>>>,
    Path(token): Path<String>,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut inner = s.lock().unwrap();
    if inner.fail_ratio > 0.0 && fastrand::f64() < inner.fail_ratio {
        return (
            axum::http::StatusCode::BAD_GATEWAY,
            "<html>502 Bad Gateway</html>",
        )
            .into_response();
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    inner.calls.push(parsed.clone().unwrap_or(Value::Null));
    let answer = (|| {
        if token != TOKEN {
            return Err(err(
                19001,
                "param invalid: incoming webhook access token invalid",
            ));
        }
        if body.len() > 20 * 1024 {
            return Err(err(9499, "request body too large"));
        }
        let Some(mut body) = parsed else {
            return Err(err(9499, "Bad Request"));
        };
        if inner.signed {
            let ts: i64 = body["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let now = hookbridge::event::now_ms() / 1000;
            let sign = hookbridge::connectors::feishu_robot::sign(ts, SECRET);
            if (now - ts).abs() > 3600 || body["sign"].as_str() != Some(sign.as_str()) {
                return Err(err(
                    19021,
                    "sign match fail or timestamp is not within one hour from current time",
                ));
            }
        }
        let kind = body["msg_type"].as_str().unwrap_or("");
        if !["text", "post", "image", "share_chat", "interactive"].contains(&kind)
            || body.get("content").is_none() && body.get("card").is_none()
        {
            return Err(err(9499, "Bad Request"));
        }
        if let Some(k) = &inner.keyword
            && !body["content"].to_string().contains(k.as_str())
        {
            return Err(err(19024, "Key Words Not Found"));
        }
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            inner.recent.pop_front();
        }
        let last_second = inner
            .recent
            .iter()
            .filter(|t| now.duration_since(**t) < Duration::from_secs(1))
            .count();
        if inner.recent.len() >= inner.limits.0 || last_second >= inner.limits.1 {
            return Err(err(11232, "frequency limited"));
        }
        inner.recent.push_back(now);
        if let Some(o) = body.as_object_mut() {
            o.remove("timestamp");
            o.remove("sign");
        }
        inner.posted.push(body);
        Ok(json!({ "code": 0, "data": {}, "msg": "success" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e)).into_response()
}
