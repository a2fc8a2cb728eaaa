//! A fake WeCom group robot on 127.0.0.1 (`POST /cgi-bin/webhook/send?key=…`) that does what
//! the robot does, as WeCom's robot documentation and global error codes describe it: HTTP 200
//! with `errcode` (and an errmsg carrying a hint and the caller's address), an unknown key
//! 93000, an unknown `msgtype` 40008, empty content 44004, content past its byte limit (text
//! 2048, markdown 4096) 45002, more than 8 articles 45008, more than 20 messages a minute
//! 45009. WeCom has no idempotency key for robots: every accepted post shows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use serde_json::{Value, json};

pub const KEY: &str = "693a91f6-7fake-4bc4-97a0-0ec2sifa5aaa";

#[derive(Default)]
struct Inner {
    /// Every request's body, accepted or not.
    calls: Vec<Value>,
    /// What the group shows.
    posted: Vec<Value>,
    recent: VecDeque<Instant>,
    /// Posts a minute beyond which it answers 45009 (WeCom's 20; 0 also means 20).
    per_minute: usize,
    /// The share of posts answered -1 (系统繁忙) before they do anything.
    fail_ratio: f64,
}

#[derive(Clone)]
pub struct FakeWeComRobot {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

fn err(code: i64, msg: &str) -> Value {
    json!({
        "errcode": code,
        "errmsg": format!("{msg}, hint: [1796000000_12_fake], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}"),
    })
}

impl FakeWeComRobot {
    pub async fn start() -> FakeWeComRobot {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/cgi-bin/webhook/send", post(send))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeWeComRobot { url, inner }
    }

    /// The webhook URL as the robot's page shows it.
    pub fn webhook(&self) -> String {
        format!("{}/cgi-bin/webhook/send?key={KEY}", self.url)
    }

    pub fn calls(&self) -> Vec<Value> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn posted(&self) -> Vec<Value> {
        self.inner.lock().unwrap().posted.clone()
    }

    /// Posts a minute it takes, for a run that posts more than a group would.
    pub fn set_per_minute(&self, per_minute: usize) {
        self.inner.lock().unwrap().per_minute = per_minute;
    }

    pub fn set_fail_ratio(&self, ratio: f64) {
        self.inner.lock().unwrap().fail_ratio = ratio;
    }
}

async fn send(
    State(s): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let mut inner = s.lock().unwrap();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    inner.calls.push(parsed.clone().unwrap_or(Value::Null));
    let answer = (|| {
        if q.get("key").map(String::as_str) != Some(KEY) {
            return Err(err(93000, "invalid webhook url"));
        }
        if inner.fail_ratio > 0.0 && fastrand::f64() < inner.fail_ratio {
            return Err(err(-1, "system busy"));
        }
        let Some(body) = parsed else {
            return Err(err(40035, "invalid args"));
        };
        let msgtype = body["msgtype"].as_str().unwrap_or("");
        let limit = match msgtype {
            "text" => Some(("/text/content", 2048)),
            "markdown" => Some(("/markdown/content", 4096)),
            "news" | "image" | "file" | "voice" | "template_card" => None,
            _ => return Err(err(40008, "invalid message type")),
        };
        if let Some((at, max)) = limit {
            let content = body.pointer(at).and_then(Value::as_str).unwrap_or("");
            if content.is_empty() {
                return Err(err(44004, "empty content"));
            }
            if content.len() > max {
                return Err(err(45002, "content size out of limit"));
            }
        }
        // A template card: one of the robot's two kinds, with a title; a text notice opens
        // something when tapped.
        if msgtype == "template_card" {
            let card = &body["template_card"];
            let kind = card["card_type"].as_str().unwrap_or("");
            let titled = card["main_title"]["title"]
                .as_str()
                .is_some_and(|t| !t.is_empty());
            let action = card["card_action"]["type"]
                .as_i64()
                .is_some_and(|t| t == 1 || t == 2);
            if !["text_notice", "news_notice"].contains(&kind) || !titled || !action {
                return Err(err(40058, "invalid template_card"));
            }
        }
        if msgtype == "news" {
            let n = body["news"]["articles"].as_array().map_or(0, Vec::len);
            if n == 0 || n > 8 {
                return Err(err(45008, "article size out of limit"));
            }
        }
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            inner.recent.pop_front();
        }
        let per_minute = if inner.per_minute == 0 {
            20
        } else {
            inner.per_minute
        };
        if inner.recent.len() >= per_minute {
            return Err(err(45009, "api freq out of limit"));
        }
        inner.recent.push_back(now);
        inner.posted.push(body);
        Ok(json!({ "errcode": 0, "errmsg": "ok" }))
    })();
    axum::Json(answer.unwrap_or_else(|e| e))
}
