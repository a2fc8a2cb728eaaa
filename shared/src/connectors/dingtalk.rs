//! DingTalk work notifications (工作通知) through the classic `oapi.dingtalk.com` API:
//! `gettoken`, `asyncsend_v2`, `status_bar/update`. See `protocols/dingtalk.md`.
//!
//! DingTalk answers HTTP 200 on failure: success is `errcode == 0`, `errcode 88` carries the
//! real code in `sub_code`, and an IP ban answers with HTML. Every answer goes through
//! [`judge`], which maps the protocol's codes to the three error classes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{debug, info, instrument, warn};

use crate::config::DingTalkConfig;
use crate::delivery::Connector;
use crate::event::{Action, Delivery, Failure, Millis, Outcome, now_ms};
use crate::pacer::Pacer;
use crate::store::{DeliveryStore, TokenRecord, TokenStore};

pub const CONNECTOR: &str = "dingtalk";
/// `msg` must serialize to at most this many bytes.
pub const MAX_MSG_BYTES: usize = 2048;
/// `userid_list` entries per call.
pub const MAX_USERIDS: usize = 100;
/// The OA status bar only shows when a send has at most this many userids.
pub const MAX_STATUS_BAR_USERS: usize = 5;

pub const SEND_PATH: &str = "/topapi/message/corpconversation/asyncsend_v2";
pub const STATUS_BAR_PATH: &str = "/topapi/message/corpconversation/status_bar/update";
pub const TOKEN_PATH: &str = "/gettoken";

// ---- message shapes ----

/// The `asyncsend_v2` body (JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncSend {
    pub agent_id: i64,
    pub userid_list: String,
    pub to_all_user: bool,
    pub msg: Msg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
pub enum Msg {
    Oa { oa: Oa },
    Markdown { markdown: Markdown },
    Text { text: Text },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Oa {
    pub message_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc_message_url: Option<String>,
    pub head: OaHead,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_bar: Option<StatusBar>,
    pub body: OaBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OaHead {
    pub bgcolor: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusBar {
    pub status_value: String,
    pub status_bg: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OaBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form: Vec<FormRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormRow {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Markdown {
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub content: String,
}

/// The message of an `update_status` delivery: which cards to flip, and to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The event whose cards to update.
    pub event: String,
    /// Only this user's card(s); `None`, or a user with no card, means every card.
    pub user: Option<String>,
    pub status_value: String,
    pub status_bg: String,
}

impl Msg {
    pub fn byte_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// The text that may be shortened to fit: the OA form row holding the message (or the
    /// content), the markdown text, the text content. Unique tags are kept elsewhere or in
    /// front, so cutting the tail keeps them.
    fn long_text(&mut self) -> Option<&mut String> {
        match self {
            Msg::Oa { oa } => match oa.body.form.iter_mut().max_by_key(|r| r.value.len()) {
                Some(row) => Some(&mut row.value),
                None => oa.body.content.as_mut(),
            },
            Msg::Markdown { markdown } => Some(&mut markdown.text),
            Msg::Text { text } => Some(&mut text.content),
        }
    }

    /// Shortens the long text (ending it with `…`) until the message fits in `MAX_MSG_BYTES`.
    /// Returns whether it fits.
    pub fn fit(&mut self) -> bool {
        if self.byte_len() <= MAX_MSG_BYTES {
            return true;
        }
        let Some(original) = self.long_text().map(|t| t.clone()) else {
            return false;
        };
        let chars: Vec<char> = original.chars().collect();
        let set = |msg: &mut Msg, keep: usize| {
            if let Some(t) = msg.long_text() {
                *t = chars[..keep].iter().collect::<String>() + "…";
            }
        };
        // Largest prefix that fits, by binary search over the number of chars kept.
        let (mut lo, mut hi) = (0usize, chars.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            set(self, mid);
            if self.byte_len() <= MAX_MSG_BYTES {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        set(self, lo);
        self.byte_len() <= MAX_MSG_BYTES
    }

    pub fn has_status_bar(&self) -> bool {
        matches!(self, Msg::Oa { oa } if oa.status_bar.is_some())
    }
}

// ---- answers and error classes ----

/// Why a call failed, as the sender needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The access token is invalid or expired: refresh it once and retry at once.
    TokenExpired(String),
    Failed(Failure),
}

/// Judges a DingTalk answer by its body, not its HTTP status (which is 200 on failure).
pub fn judge(path: &str, status: u16, body: &[u8]) -> Result<Value, ApiError> {
    let transient = |m: String| Err(ApiError::Failed(Failure::Transient(m)));
    let throttled =
        |reason: String, wait: Millis| Err(ApiError::Failed(Failure::Throttled { reason, wait }));
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        if status >= 500 {
            return transient(format!("DingTalk {path}: HTTP {status}"));
        }
        let head: String = String::from_utf8_lossy(body).chars().take(80).collect();
        return throttled(
            format!(
                "DingTalk {path}: HTTP {status} with a non-JSON answer (IP rate limit page?): {head:?}"
            ),
            IP_BAN_MS,
        );
    };
    if v.get("punish").is_some() || v.get("wait").is_some() {
        return throttled(
            format!(
                "DingTalk {path}: this IP is rate-limited (10 000 calls / 20 s); waiting at least 5 minutes"
            ),
            IP_BAN_MS,
        );
    }
    let errcode = v.get("errcode").and_then(as_code);
    let code = match errcode {
        Some(88) => v.get("sub_code").and_then(as_code).unwrap_or(88),
        Some(c) => c,
        None if v.get("task_id").is_some() => 0,
        None if status >= 500 => return transient(format!("DingTalk {path}: HTTP {status}")),
        None => return transient(format!("DingTalk {path}: answer without errcode: {v}")),
    };
    if code == 0 {
        return Ok(v);
    }
    let text = ["sub_msg", "errmsg"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    let message = format!("DingTalk {path}: errcode {code} {text}{}", hint(code));
    match class(code, path == TOKEN_PATH) {
        Class::Token => Err(ApiError::TokenExpired(message)),
        Class::Throttled(wait) => throttled(message, wait),
        Class::Transient => transient(message),
        Class::Permanent => Err(ApiError::Failed(Failure::Permanent(message))),
    }
}

/// An IP ban lasts 5 minutes (protocols/dingtalk.md §5).
const IP_BAN_MS: Millis = 5 * 60 * 1000;

fn as_code(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

enum Class {
    Token,
    /// Back-pressure: slow down and try again after this many ms, spending no attempt.
    Throttled(Millis),
    Transient,
    Permanent,
}

/// protocols/dingtalk.md §5 and §6.
fn class(code: i64, is_gettoken: bool) -> Class {
    match code {
        40014 | 42001 | 40001 if !is_gettoken => Class::Token,
        // QPS limits (per app and API, per API) and "system busy": wait ≥ 1 s.
        90018 | 90002 | -1 => Class::Throttled(1000),
        // Temporarily disabled: minutes.
        90001 | 90003..=90014 | 90017 => Class::Throttled(60_000),
        500 | 41052 => Class::Transient,
        _ => Class::Permanent,
    }
}

fn hint(code: i64) -> &'static str {
    match code {
        40001 | 40089 | 40096 => " (check connectors.dingtalk.app_key and app_secret)",
        40056 | 41011 => " (check connectors.dingtalk.agent_id)",
        60020 => " (add this server's egress IP to the app's IP whitelist)",
        60011 => " (grant the app the work-notification permission)",
        33012 | 40003 | 40031 => {
            " (a recipient is not a userid of this organization: check the recipient map)"
        }
        90020 => " (the organization's monthly API quota is used up)",
        41052 => " (the send may not have finished yet)",
        _ => "",
    }
}

// ---- HTTP with pacing ----

struct Api {
    http: reqwest::Client,
    base: String,
    /// This app's pace per API, shared by every sender task of the process.
    pacer: Pacer,
}

impl Api {
    async fn call(
        &self,
        path: &'static str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        if let Err(held) = self.pacer.wait(path).await {
            return Err(ApiError::Failed(Failure::Throttled {
                reason: format!(
                    "DingTalk {path}: holding calls for {} s after DingTalk said too fast",
                    held.as_secs()
                ),
                wait: Millis::try_from(held.as_millis()).unwrap_or(Millis::MAX),
            }));
        }
        let answer = self.send(path, query, body).await;
        match &answer {
            Err(ApiError::Failed(Failure::Throttled { wait, .. })) => {
                let pause = Duration::from_millis(u64::try_from(*wait).unwrap_or(0));
                warn!(
                    api = path,
                    qps = self.pacer.qps(path) / 2.0,
                    "DingTalk says too fast; slowing down"
                );
                self.pacer.throttled(path, pause);
            }
            Ok(_) => self.pacer.succeeded(path),
            Err(_) => {}
        }
        answer
    }

    async fn send(
        &self,
        path: &'static str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base);
        let req = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        let resp = req.query(query).send().await.map_err(|e| {
            ApiError::Failed(Failure::Transient(format!(
                "DingTalk {path} unreachable: {}",
                without_url(e)
            )))
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            ApiError::Failed(Failure::Transient(format!(
                "DingTalk {path}: reading the answer failed: {}",
                without_url(e)
            )))
        })?;
        judge(path, status, &bytes)
    }
}

/// reqwest errors print the URL, which carries the access token or app secret.
fn without_url(e: reqwest::Error) -> reqwest::Error {
    e.without_url()
}

// ---- token cache ----

/// One access token per app, shared by the fleet through the store and cached per process.
/// Refresh is single-flight in a process (the mutex) and across processes (the store lease).
pub struct TokenCache {
    name: String,
    app_key: String,
    app_secret: String,
    store: Arc<dyn TokenStore>,
    memory: Mutex<Option<TokenRecord>>,
    owner: String,
}

const LEASE_MS: Millis = 10_000;
const LEASE_POLL: Duration = Duration::from_millis(100);

impl TokenCache {
    pub fn new(app_key: String, app_secret: String, store: Arc<dyn TokenStore>) -> Self {
        TokenCache {
            name: format!("dingtalk#{app_key}"),
            app_key,
            app_secret,
            store,
            memory: Mutex::new(None),
            owner: format!("{:016x}", fastrand::u64(..)),
        }
    }

    async fn get(&self, api: &Api) -> Result<String, Failure> {
        let mut memory = self.memory.lock().await;
        if let Some(t) = memory.as_ref()
            && now_ms() < t.refresh_at
        {
            return Ok(t.access_token.clone());
        }
        let store_err =
            |e: crate::store::StoreError| Failure::Transient(format!("token cache: {e}"));
        let deadline = now_ms() + LEASE_MS;
        while now_ms() < deadline {
            let shared = self.store.token(&self.name).await.map_err(store_err)?;
            if let Some(t) = &shared
                && now_ms() < t.refresh_at
            {
                *memory = shared.clone();
                return Ok(t.access_token.clone());
            }
            if self
                .store
                .lease(&self.name, &self.owner, now_ms(), now_ms() + LEASE_MS)
                .await
                .map_err(store_err)?
            {
                let fresh = self.fetch(api).await?;
                self.store
                    .save_token(&self.name, &fresh)
                    .await
                    .map_err(store_err)?;
                *memory = Some(fresh.clone());
                return Ok(fresh.access_token);
            }
            // Another process is refreshing; a token that has not expired yet still works.
            if let Some(t) = shared
                && now_ms() < t.expires_at
            {
                return Ok(t.access_token);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
        // The lease holder went quiet for a whole lease: fetch without it.
        let fresh = self.fetch(api).await?;
        self.store
            .save_token(&self.name, &fresh)
            .await
            .map_err(store_err)?;
        *memory = Some(fresh.clone());
        Ok(fresh.access_token)
    }

    #[instrument(skip_all, fields(app_key = %self.app_key))]
    async fn fetch(&self, api: &Api) -> Result<TokenRecord, Failure> {
        let query = [
            ("appkey", self.app_key.as_str()),
            ("appsecret", self.app_secret.as_str()),
        ];
        let v = api
            .call(TOKEN_PATH, &query, None)
            .await
            .map_err(|e| match e {
                ApiError::Failed(f) => f,
                ApiError::TokenExpired(m) => Failure::Permanent(m),
            })?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Transient("DingTalk gettoken: no access_token in the answer".into())
            })?;
        // Missing or non-positive lifetimes fall back to 7200 s, so a bad answer cannot cause a
        // refresh loop; refresh 5 minutes early but never sooner than a minute.
        let expires_in = v
            .get("expires_in")
            .and_then(as_code)
            .filter(|s| *s > 0)
            .unwrap_or(7200);
        let now = now_ms();
        info!(expires_in, "fetched a DingTalk access token");
        Ok(TokenRecord {
            access_token: token.to_owned(),
            refresh_at: now + (expires_in - 300).max(60).min(expires_in) * 1000,
            expires_at: now + expires_in * 1000,
        })
    }

    async fn invalidate(&self, token: &str) -> Result<(), Failure> {
        let mut memory = self.memory.lock().await;
        if memory.as_ref().is_some_and(|t| t.access_token == token) {
            *memory = None;
        }
        self.store
            .drop_token(&self.name, token)
            .await
            .map_err(|e| Failure::Transient(format!("token cache: {e}")))
    }
}

// ---- the connector ----

enum Mode {
    Live {
        api: Box<Api>,
        tokens: TokenCache,
    },
    /// No credentials: render every request and record it without calling DingTalk.
    DryRun,
}

pub struct DingTalk {
    agent_id: i64,
    mode: Mode,
}

impl DingTalk {
    /// A live connector when `app_secret` is given, a dry-run one otherwise.
    pub fn new(
        config: &DingTalkConfig,
        app_secret: Option<String>,
        tokens: Arc<dyn TokenStore>,
    ) -> Result<Self, String> {
        let mode = match (&config.app_key, app_secret) {
            (Some(key), Some(secret)) => {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(config.timeout_secs))
                    .connect_timeout(Duration::from_secs(config.timeout_secs.min(5)))
                    .build()
                    .map_err(|e| format!("HTTP client: {e}"))?;
                Mode::Live {
                    api: Box::new(Api {
                        http,
                        base: config.base_url.trim_end_matches('/').to_owned(),
                        pacer: Pacer::new(config.max_qps),
                    }),
                    tokens: TokenCache::new(key.clone(), secret, tokens),
                }
            }
            _ => Mode::DryRun,
        };
        Ok(DingTalk {
            agent_id: config.agent_id,
            mode,
        })
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.mode, Mode::DryRun)
    }

    /// Calls an API with the shared token; on a token error, refreshes once and retries at once.
    async fn call(&self, path: &'static str, body: &Value) -> Result<Value, Failure> {
        let Mode::Live { api, tokens } = &self.mode else {
            unreachable!("dry-run never calls DingTalk");
        };
        let token = tokens.get(api).await?;
        match api
            .call(path, &[("access_token", &token)], Some(body))
            .await
        {
            Err(ApiError::TokenExpired(m)) => {
                warn!(reason = %m, "access token rejected; refreshing once");
                tokens.invalidate(&token).await?;
                let token = tokens.get(api).await?;
                api.call(path, &[("access_token", &token)], Some(body))
                    .await
                    .map_err(|e| match e {
                        ApiError::TokenExpired(m) => {
                            Failure::Transient(format!("a freshly fetched token was rejected: {m}"))
                        }
                        ApiError::Failed(f) => f,
                    })
            }
            Err(ApiError::Failed(f)) => Err(f),
            Ok(v) => Ok(v),
        }
    }

    async fn send(&self, d: &Delivery) -> Outcome {
        if self.is_dry_run() {
            return Outcome::DryRun(
                json!({ "requests": [{ "path": SEND_PATH, "body": d.message }] }),
            );
        }
        match self.call(SEND_PATH, &d.message).await {
            Ok(v) => match v.get("task_id").and_then(as_code) {
                Some(task_id) => Outcome::Sent(json!({ "task_id": task_id })),
                None => Outcome::Failed(Failure::Permanent(format!(
                    "DingTalk accepted the send but returned no task_id: {v}"
                ))),
            },
            Err(f) => Outcome::Failed(f),
        }
    }

    /// Flips the status bar of the cards an earlier send created. Waits while any of them is
    /// still being sent.
    async fn update_status(&self, d: &Delivery, store: &dyn DeliveryStore) -> Outcome {
        let update: StatusUpdate = match serde_json::from_value(d.message.clone()) {
            Ok(u) => u,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad status update: {e}")));
            }
        };
        let cards: Vec<Delivery> = match store.deliveries_of(&update.event).await {
            Ok(all) => all
                .into_iter()
                .filter(|c| c.connector == CONNECTOR && c.action == Action::Send)
                .filter(|c| {
                    serde_json::from_value::<AsyncSend>(c.message.clone())
                        .is_ok_and(|s| s.msg.has_status_bar())
                })
                .collect(),
            Err(e) => return Outcome::Failed(Failure::Transient(e.to_string())),
        };
        if cards.is_empty() {
            return Outcome::Skipped(format!(
                "no DingTalk to-do card was sent for {} (unknown messageId, not a to-do, or expired)",
                update.event
            ));
        }
        let mine: Vec<&Delivery> = match &update.user {
            Some(u) if cards.iter().any(|c| c.recipients.contains(u)) => {
                cards.iter().filter(|c| c.recipients.contains(u)).collect()
            }
            _ => cards.iter().collect(),
        };
        if let Some(c) = mine.iter().find(|c| !c.status.is_final()) {
            return Outcome::Wait(format!(
                "card {} is {} ; the status bar can change once it is sent",
                c.sk,
                c.status.as_str()
            ));
        }
        let done: Vec<(&Delivery, Option<i64>)> = mine
            .iter()
            .filter(|c| c.status.is_done())
            .map(|c| {
                (
                    *c,
                    c.result
                        .as_ref()
                        .and_then(|r| r.get("task_id"))
                        .and_then(as_code),
                )
            })
            .collect();
        if done.is_empty() {
            return Outcome::Skipped("every card of this to-do failed to send".into());
        }
        let body = |task_id: Option<i64>| {
            json!({
                "agent_id": self.agent_id,
                "task_id": task_id,
                "status_value": update.status_value,
                "status_bg": update.status_bg,
            })
        };
        if self.is_dry_run() {
            let requests: Vec<Value> = done
                .iter()
                .map(|(_, t)| json!({ "path": STATUS_BAR_PATH, "body": body(*t) }))
                .collect();
            return Outcome::DryRun(json!({ "requests": requests }));
        }
        let mut updated = vec![];
        for (card, task_id) in done {
            let Some(task_id) = task_id else {
                debug!(card = %card.sk, "card was a dry run: no task to update");
                continue;
            };
            if let Err(f) = self.call(STATUS_BAR_PATH, &body(Some(task_id))).await {
                return Outcome::Failed(f);
            }
            updated.push(task_id);
        }
        Outcome::Sent(json!({ "updated_task_ids": updated }))
    }
}

#[async_trait]
impl Connector for DingTalk {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    async fn deliver(&self, d: &Delivery, store: &dyn DeliveryStore) -> Outcome {
        match d.action {
            Action::Send => self.send(d).await,
            Action::UpdateStatus => self.update_status(d, store).await,
        }
    }
}

/// Statuses the to-do lifecycle uses (colours from the vendor page).
pub fn todo_open() -> StatusBar {
    StatusBar {
        status_value: "待处理".into(),
        status_bg: "0xFFFF9D46".into(),
    }
}

pub fn todo_done() -> StatusBar {
    StatusBar {
        status_value: "已处理".into(),
        status_bg: "0xFF78C06E".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(body: &str) -> Result<Value, ApiError> {
        judge(SEND_PATH, 200, body.as_bytes())
    }

    #[test]
    fn success_is_errcode_zero_or_a_task_id() {
        assert!(class_of(r#"{"errcode":0,"task_id":1}"#).is_ok());
        assert!(class_of(r#"{"task_id":1,"request_id":"x"}"#).is_ok());
    }

    #[test]
    fn errcode_88_is_unwrapped_to_its_sub_code() {
        let r = class_of(r#"{"errcode":88,"sub_code":"40014","sub_msg":"不合法的access_token"}"#);
        assert!(matches!(r, Err(ApiError::TokenExpired(m)) if m.contains("40014")));
        let r = class_of(r#"{"errcode":88,"sub_code":"90018","sub_msg":"too fast"}"#);
        assert!(matches!(
            r,
            Err(ApiError::Failed(Failure::Throttled { wait: 1000, .. }))
        ));
        let r = class_of(r#"{"errcode":88,"sub_code":"40000","sub_msg":"access_token is blank"}"#);
        assert!(matches!(r, Err(ApiError::Failed(Failure::Permanent(_)))));
    }

    #[test]
    fn codes_map_to_classes() {
        for (code, want) in [
            (40014, "token"),
            (42001, "token"),
            (40001, "token"),
            (-1, "throttled"),
            (500, "transient"),
            (90018, "throttled"),
            (90002, "throttled"),
            (90006, "throttled"),
            (41052, "transient"),
            (90020, "permanent"),
            (40056, "permanent"),
            (33012, "permanent"),
            (34016, "permanent"),
        ] {
            let got = match class_of(&format!(r#"{{"errcode":{code},"errmsg":"x"}}"#)) {
                Err(ApiError::TokenExpired(_)) => "token",
                Err(ApiError::Failed(Failure::Transient(_))) => "transient",
                Err(ApiError::Failed(Failure::Throttled { .. })) => "throttled",
                Err(ApiError::Failed(Failure::Permanent(_))) => "permanent",
                Ok(_) => "ok",
            };
            assert_eq!(got, want, "errcode {code}");
        }
        // On gettoken itself a bad secret is configuration, not an expired token.
        assert!(matches!(
            judge(TOKEN_PATH, 200, br#"{"errcode":40001,"errmsg":"x"}"#),
            Err(ApiError::Failed(Failure::Permanent(_)))
        ));
    }

    #[test]
    fn ip_bans_are_throttles_and_http_errors_are_transient() {
        for (status, body) in [
            (200, "<html><body>访问被拒绝</body></html>"),
            (403, "<html>deny</html>"),
            (
                200,
                r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"x"}"#,
            ),
        ] {
            let r = judge(SEND_PATH, status, body.as_bytes());
            assert!(
                matches!(
                    r,
                    Err(ApiError::Failed(Failure::Throttled {
                        wait: IP_BAN_MS,
                        ..
                    }))
                ),
                "{status} {body}"
            );
        }
        for (status, body) in [(502, ""), (503, r#"{"message":"bad gateway"}"#)] {
            let r = judge(SEND_PATH, status, body.as_bytes());
            assert!(
                matches!(r, Err(ApiError::Failed(Failure::Transient(_)))),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn hints_point_at_the_config() {
        let Err(ApiError::Failed(Failure::Permanent(m))) =
            class_of(r#"{"errcode":60020,"errmsg":"访问ip不在白名单之中"}"#)
        else {
            panic!()
        };
        assert!(m.contains("60020") && m.contains("whitelist"), "{m}");
    }

    fn oa_with(message: &str) -> Msg {
        Msg::Oa {
            oa: Oa {
                message_url: "https://hap.example.com/x".into(),
                pc_message_url: None,
                head: OaHead {
                    bgcolor: "FFFF6A00".into(),
                    text: "采购".into(),
                },
                status_bar: Some(todo_open()),
                body: OaBody {
                    title: Some("待办".into()),
                    form: vec![
                        FormRow {
                            key: "应用：".into(),
                            value: "采购管理".into(),
                        },
                        FormRow {
                            key: "消息：".into(),
                            value: message.into(),
                        },
                    ],
                    content: Some("#8d3e6f".into()),
                    file_count: None,
                },
            },
        }
    }

    #[test]
    fn fit_shortens_the_message_to_2048_bytes_and_keeps_the_tag() {
        let mut small = oa_with("请审批");
        let before = small.clone();
        assert!(small.fit());
        assert_eq!(small, before, "a message that fits is untouched");

        let mut big = oa_with(&"审批\"引号\"\n".repeat(400));
        assert!(big.byte_len() > MAX_MSG_BYTES);
        assert!(big.fit());
        let len = big.byte_len();
        assert!(len <= MAX_MSG_BYTES && len > MAX_MSG_BYTES - 16, "{len}");
        let Msg::Oa { oa } = &big else { panic!() };
        assert!(oa.body.form[1].value.ends_with('…'));
        assert_eq!(oa.body.content.as_deref(), Some("#8d3e6f"));
    }

    #[test]
    fn msg_serializes_in_dingtalk_shape() {
        let v = serde_json::to_value(oa_with("x")).unwrap();
        assert_eq!(v["msgtype"], "oa");
        assert_eq!(v["oa"]["status_bar"]["status_bg"], "0xFFFF9D46");
        let md = Msg::Markdown {
            markdown: Markdown {
                title: "t".into(),
                text: "x".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(md).unwrap(),
            json!({"msgtype":"markdown","markdown":{"title":"t","text":"x"}})
        );
    }
}
