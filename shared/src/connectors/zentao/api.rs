//! ZenTao's `im` API as hookbridge calls it: the query built with a PHP-`urlencode`-compatible
//! encoder and signed as sent (ZenTao re-encodes it before checking the token), and every answer
//! judged into an actionable reason. Failures come as HTTP 200 with `result: fail`, an
//! `{errcode, errmsg}` entry envelope, a deny redirect or an HTML page: configuration or data
//! problems, so only network errors and HTTP 5xx are retried, and 429/503 are back-pressure.

use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::{TokenMode, ZenTaoInstance};
use crate::connectors::CallCounter;
use crate::event::{Failure, now_ms};
use crate::pacer::MAX_SLEEP;
use crate::store::RateStore;

/// PHP `urlencode`: `[A-Za-z0-9_.-]` kept, space as `+`, every other byte `%XX` (uppercase).
pub fn php_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `http_build_query` over ordered pairs, as ZenTao rebuilds it to check the token.
pub fn build_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", php_urlencode(k), php_urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// T1: `md5(md5(query) + key)`, lowercase hex.
pub fn token(query: &str, key: &str) -> String {
    md5_hex(&(md5_hex(query) + key))
}

/// T2: `md5(code + key + time)`, time in unix seconds (10 digits).
pub fn time_token(code: &str, key: &str, time: i64) -> String {
    md5_hex(&format!("{code}{key}{time}"))
}

/// The methods hookbridge calls (generation G2, `m=im`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    SendNotification,
    SendChatMessage,
    GetGroupChats,
    GetChatUsers,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::SendNotification => "sendNotification",
            Method::SendChatMessage => "sendChatMessage",
            Method::GetGroupChats => "getGroupChats",
            Method::GetChatUsers => "getChatUsers",
        }
    }
}

/// Judges a ZenTao answer; the reasons say what an operator has to change.
pub fn judge(status: u16, body: &[u8]) -> Result<Value, Failure> {
    let permanent = |m: String| Err(Failure::Permanent(m));
    if status >= 500 {
        return Err(Failure::Transient(format!("ZenTao answered HTTP {status}")));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let head: String = String::from_utf8_lossy(body).chars().take(120).collect();
        return permanent(format!(
            "ZenTao answered HTTP {status} with a page, not JSON (wrong entry point or a missing/invalid token sends \
             x.php into client mode): {head:?}"
        ));
    };
    match v.get("result") {
        Some(Value::String(r)) if r == "success" => return Ok(v),
        Some(Value::Bool(true)) => return Ok(v),
        Some(_) => {
            let message = v.get("message").and_then(Value::as_str).unwrap_or("");
            return permanent(format!("ZenTao refused the message: {message}"));
        }
        None => {}
    }
    if let Some(code) = v
        .get("errcode")
        .and_then(|c| c.as_i64().or_else(|| c.as_str()?.parse().ok()))
    {
        let errmsg = v.get("errmsg").and_then(Value::as_str).unwrap_or("");
        let hint = match code {
            401 => {
                "the token does not check out: connectors.zentao key must be the app's 密钥, code its 代号"
            }
            403 => {
                "the app refuses this caller: add this server's egress IP to the app's IP list, or bind an account to the app"
            }
            404 => "no app with this code: check connectors.zentao code (代号)",
            // CALLED_TIME: the second was not later than the entry's last call. ZenTao checks
            // it before doing anything, so the message was not shown: try again, no attempt
            // spent (another sender's call, or one on a skewed clock, got in first).
            405 => {
                return Err(Failure::Throttled {
                    reason: format!(
                        "ZenTao errcode 405 {errmsg}: the entry was already called in this second \
                         or later (token_mode = \"time\" allows one call a second per entry); \
                         trying again in a second"
                    ),
                    wait: 1_000,
                });
            }
            407 => "the time-based token's time is malformed: use token_mode = \"classic\"",
            406 => "the account bound to the app is invalid",
            _ => "entry check failed",
        };
        return permanent(format!("ZenTao errcode {code} {errmsg}: {hint}"));
    }
    if v.get("md5").is_some()
        && v.get("data")
            .and_then(Value::as_str)
            .is_some_and(|d| d.contains("f=deny"))
    {
        return permanent(
            "ZenTao denied the call: the account bound to the app lacks the im privileges \
             (grant its group every im method)"
                .into(),
        );
    }
    permanent(format!("ZenTao answered in an unknown shape: {v}"))
}

/// A ZenTao user as its REST API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// A number, which PHP may send as text.
    #[serde(deserialize_with = "number_or_text")]
    pub id: String,
    pub account: String,
    #[serde(default)]
    pub realname: String,
}

fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("not an id: {other}"))),
    }
}

/// One page of `GET /api.php/v1/users`.
#[derive(Deserialize)]
struct UsersPage {
    #[serde(default)]
    total: usize,
    users: Vec<User>,
}

/// How many pages of users are read at most (100 users each).
const MAX_USER_PAGES: usize = 200;

/// One instance's HTTP client, with its settings and key.
pub(super) struct Client {
    http: reqwest::Client,
    instance: ZenTaoInstance,
    key: String,
    /// The `directory` login's password.
    directory_password: Option<String>,
    /// Where the seconds of time tokens are taken, fleet-wide.
    marks: Arc<dyn RateStore>,
    /// Where the sender counts its calls (the CLI's tools do not).
    calls: Option<CallCounter>,
}

impl Client {
    pub(super) fn new(
        instance: ZenTaoInstance,
        key: String,
        directory_password: Option<String>,
        marks: Arc<dyn RateStore>,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::http::client(Duration::from_secs(instance.timeout_secs))?;
        Ok(Client {
            http,
            instance,
            key,
            directory_password,
            marks,
            calls: None,
        })
    }

    /// The same, counting its answered calls for `hookbridge status`.
    pub(super) fn counted(self, calls: CallCounter) -> Self {
        Client {
            calls: Some(calls),
            ..self
        }
    }

    /// Every user, with accounts, through ZenTao's REST API v1 as the `directory` login: a
    /// session token from `POST /api.php/v1/tokens`, then `GET /api.php/v1/users` page by page
    /// (it needs the company-browse privilege). `None` without a `directory` login.
    pub(super) async fn directory(&self) -> Result<Option<Vec<User>>, Failure> {
        let (Some(login), Some(password)) = (&self.instance.directory, &self.directory_password)
        else {
            return Ok(None);
        };
        let base = format!(
            "{}/api.php/v1",
            self.instance.base_url.trim_end_matches('/')
        );
        let token: Value = self
            .rest(
                self.http
                    .post(format!("{base}/tokens"))
                    .json(&serde_json::json!({ "account": login.account, "password": password })),
            )
            .await?;
        let token = token["token"].as_str().ok_or_else(|| {
            Failure::Permanent(format!("ZenTao /api.php/v1/tokens gave no token: {token}"))
        })?;
        let mut users = vec![];
        for page in 1..=MAX_USER_PAGES {
            let got: UsersPage = serde_json::from_value(
                self.rest(
                    self.http
                        .get(format!("{base}/users"))
                        .query(&[("limit", "100"), ("page", &page.to_string())])
                        .header("Token", token),
                )
                .await?,
            )
            .map_err(|e| Failure::Permanent(format!("ZenTao /api.php/v1/users: {e}")))?;
            let last = got.users.is_empty() || users.len() + got.users.len() >= got.total;
            users.extend(got.users);
            if last {
                break;
            }
        }
        Ok(Some(users))
    }

    /// A REST API v1 call: JSON on success, `{"error": …}` with an HTTP error status otherwise.
    async fn rest(&self, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("ZenTao unreachable: {}", e.without_url())))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let said = body["error"].as_str().unwrap_or("no reason given");
        let hint = match status.as_u16() {
            400 | 401 | 403 => {
                ": check connectors.zentao directory (the account, its password, and its \
                 company-browse privilege)"
            }
            404 => ": this ZenTao has no REST API v1 (ZenTao 16 or later has it)",
            _ => "",
        };
        Err(Failure::Permanent(format!(
            "ZenTao REST API answered HTTP {}: {said}{hint}",
            status.as_u16()
        )))
    }

    /// The signed URL of one method call; `time` for a time token.
    fn url(&self, method: Method, extra: &[(&str, &str)], time: Option<i64>) -> String {
        let time_text = time.map(|t| t.to_string());
        let mut pairs: Vec<(&str, &str)> = vec![("m", "im"), ("f", method.name())];
        pairs.extend_from_slice(extra);
        if let Some(t) = &time_text {
            pairs.push(("time", t));
        }
        pairs.push(("code", &self.instance.code));
        let query = build_query(&pairs);
        let token = match time {
            None => token(&query, &self.key),
            Some(t) => time_token(&self.instance.code, &self.key, t),
        };
        let base = self.instance.base_url.trim_end_matches('/');
        format!(
            "{base}/{}?{query}&token={token}",
            self.instance.entry.trim_start_matches('/')
        )
    }

    /// The entry whose calls must carry strictly increasing times: this app on this server.
    fn entry(&self) -> String {
        format!(
            "zentao#{}@{}",
            self.instance.code,
            self.instance.base_url.trim_end_matches('/')
        )
    }

    /// A second for a time token that no other call to this entry, in any process, has used
    /// or will use: ZenTao refuses a time not later than the entry's last (`CALLED_TIME`). Waits
    /// for the next second while that is within [`MAX_SLEEP`]; after that the delivery is
    /// parked as throttled (it never sleeps through a Lambda's deadline).
    async fn second(&self) -> Result<i64, Failure> {
        let give_up = Instant::now() + MAX_SLEEP;
        loop {
            let now = now_ms();
            let second = now / 1000;
            match self.marks.advance(&self.entry(), second).await {
                Ok(true) => return Ok(second),
                Ok(false) => {}
                Err(e) => {
                    return Err(Failure::Transient(format!(
                        "ZenTao time token: could not take a second: {e}"
                    )));
                }
            }
            let next =
                Duration::from_millis((1_000 - now % 1_000).unsigned_abs() + fastrand::u64(0..50));
            if Instant::now() + next > give_up {
                return Err(Failure::Throttled {
                    reason: "ZenTao time token: other calls to this entry took the next seconds \
                             (one call a second per entry); trying again shortly"
                        .into(),
                    wait: 1_000 + i64::from(fastrand::u16(0..2_000)),
                });
            }
            tokio::time::sleep(next).await;
        }
    }

    /// How far ZenTao's clock is ahead of this machine's, in seconds, from the `Date` of an
    /// answer of its web server (any page: no token is sent).
    pub(super) async fn clock_skew(&self) -> Result<i64, Failure> {
        let url = format!("{}/", self.instance.base_url.trim_end_matches('/'));
        let resp =
            self.http.get(url).send().await.map_err(|e| {
                Failure::Transient(format!("ZenTao unreachable: {}", e.without_url()))
            })?;
        let date = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .ok_or_else(|| Failure::Permanent("ZenTao's answer has no Date header".into()))?;
        Ok(date.timestamp() - now_ms() / 1000)
    }

    pub(super) fn token_mode(&self) -> TokenMode {
        self.instance.token_mode
    }

    pub(super) fn users_by(&self) -> super::UsersBy {
        self.instance.users_by
    }

    pub(super) async fn call(
        &self,
        method: Method,
        extra: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let time = match self.instance.token_mode {
            TokenMode::Classic => None,
            TokenMode::Time => Some(self.second().await?),
        };
        let url = self.url(method, extra, time);
        let req = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("ZenTao unreachable: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        if let Some(throttled) = overloaded(status, resp.headers()) {
            return Err(throttled);
        }
        let bytes = resp.bytes().await.map_err(|e| {
            Failure::Transient(format!(
                "ZenTao: reading the answer failed: {}",
                e.without_url()
            ))
        })?;
        let answer = judge(status, &bytes);
        if let (Ok(_), Some(calls)) = (&answer, &self.calls) {
            calls.count();
        }
        answer
    }
}

/// HTTP 429 and 503 are the server (or the proxy before it) asking us to slow down: back-pressure
/// that spends no attempt, after `Retry-After` seconds when it says (5 s if not, 10 min at most).
fn overloaded(status: u16, headers: &http::HeaderMap) -> Option<Failure> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let secs = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok())
        .unwrap_or(5)
        .clamp(1, 600);
    Some(Failure::Throttled {
        reason: format!("ZenTao answered HTTP {status}: overloaded, trying again in {secs} s"),
        wait: secs * 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_answers_are_throttles_that_honour_retry_after() {
        let with = |status, retry: Option<&str>| {
            let mut h = http::HeaderMap::new();
            if let Some(r) = retry {
                h.insert(http::header::RETRY_AFTER, r.parse().unwrap());
            }
            overloaded(status, &h)
        };
        assert!(with(200, None).is_none() && with(502, None).is_none());
        let wait = |f: Option<Failure>| match f {
            Some(Failure::Throttled { wait, .. }) => wait,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(with(429, Some("12"))), 12_000);
        assert_eq!(wait(with(503, None)), 5_000);
        assert_eq!(
            wait(with(503, Some("Wed, 21 Oct 2026 07:28:00 GMT"))),
            5_000
        );
        assert_eq!(
            wait(with(429, Some("86400"))),
            600_000,
            "at most 10 minutes"
        );
    }

    /// Key 3cd0914d…: the first row reproduces the vendor page's example.
    #[test]
    fn classic_tokens_match_the_documented_vectors() {
        let key = "3cd0914d656e90ab181f1d52ff352cfe";
        for (query, want) in [
            (
                "m=chat&f=getChatUsers&code=myAppCode",
                "f5633c34c0c551a16c1d63bceb38d6a8",
            ),
            (
                "m=im&f=getChatUsers&code=myAppCode",
                "6611ac3952bcdeb4277274d081885dd2",
            ),
            (
                "m=im&f=getGroupChats&code=myAppCode",
                "07a22de5b9c287eaaf5c04320fe48aba",
            ),
            (
                "m=im&f=getChatUsers&gid=30683aea-7a1f-4ec8-a6d6-834e0310fd7d&code=myAppCode",
                "47b5ee6196ce02951e07b737509f1228",
            ),
            (
                "m=im&f=sendNotification&code=myAppCode",
                "1547b22b788502aae7988973eb6d2e79",
            ),
            (
                "m=im&f=sendChatMessage&code=myAppCode",
                "885451499b031367881b9a1d6274471f",
            ),
        ] {
            assert_eq!(token(query, key), want, "{query}");
        }
    }

    /// The vendor's own vectors, from the test_sign.sh script of xuanim/skills on GitHub.
    #[test]
    fn classic_tokens_match_the_vendor_vectors() {
        let key = "dgqfkys6lq6v9xm7n1xofhgwkvcat12n";
        for (query, want) in [
            (
                "m=im&f=getGroupChats&code=appcode",
                "3c49a8b9cf6be9b8c0496c9cd1938d76",
            ),
            (
                "m=im&f=getChatUsers&gid=30683aea-7a1f-4ec8-a6d6-834e0310fd7d&code=appcode",
                "29b61082610621da5234e89e27a51ac2",
            ),
            (
                "m=im&f=getChatUsers&code=appcode",
                "ac08eda86a9a1269c01bc9837820a54a",
            ),
            (
                "m=im&f=sendChatMessage&code=appcode",
                "8e21e776f6056d9a5e59d4022050f06a",
            ),
            (
                "m=im&f=sendNotification&code=appcode",
                "71873ed1a80091cdca425e7e6f303af1",
            ),
        ] {
            assert_eq!(token(query, key), want, "{query}");
        }
    }

    #[test]
    fn time_token_matches_the_documented_vector() {
        let t = time_token("myApp", "427c579384224abf9570779d82969d1e", 1557034496);
        assert_eq!(t, "020ec7c33a7f1a048743849d15fb218a");
    }

    #[test]
    fn queries_are_encoded_like_php() {
        assert_eq!(php_urlencode("a b~c/d_e.f-g"), "a+b%7Ec%2Fd_e.f-g");
        assert_eq!(php_urlencode("组"), "%E7%BB%84");
        assert_eq!(
            build_query(&[
                ("m", "im"),
                ("f", "getChatUsers"),
                ("gid", "a b"),
                ("code", "c")
            ]),
            "m=im&f=getChatUsers&gid=a+b&code=c"
        );
    }

    #[test]
    fn answers_are_judged_with_actionable_reasons() {
        assert!(judge(200, br#"{"result":"success"}"#).is_ok());
        assert!(judge(200, br#"{"result":true,"message":""}"#).is_ok());
        let reason = |status, body: &str| match judge(status, body.as_bytes()) {
            Err(Failure::Permanent(m)) => format!("permanent: {m}"),
            Err(Failure::Transient(m)) => format!("transient: {m}"),
            Err(Failure::Throttled { reason, .. }) => format!("throttled: {reason}"),
            Ok(_) => "ok".into(),
        };
        assert!(
            reason(
                200,
                r#"{"result":"fail","message":"请提供通知信息的标题。"}"#
            )
            .contains("permanent: ZenTao refused the message: 请提供通知信息的标题。")
        );
        assert!(
            reason(200, r#"{"result":false,"message":"没有设置接收者类型"}"#)
                .starts_with("permanent")
        );
        assert!(
            reason(200, r#"{"errcode":401,"errmsg":"INVALID_TOKEN"}"#)
                .contains("key must be the app's 密钥")
        );
        assert!(reason(200, r#"{"errcode":"403","errmsg":"IP_DENIED"}"#).contains("egress IP"));
        assert!(reason(200, r#"{"errcode":404,"errmsg":"EMPTY_ENTRY"}"#).contains("代号"));
        let deny = r#"{"status":"success","data":"{\"locate\":\"/x.php?m=user&f=deny&t=json\"}","md5":"x"}"#;
        assert!(reason(200, deny).contains("im privileges"));
        assert!(reason(200, "<html>Uncaught LengthException</html>").contains("client mode"));
        assert!(reason(502, "").starts_with("transient"));
        assert!(reason(503, r#"{"result":"success"}"#).starts_with("transient"));
    }
}
