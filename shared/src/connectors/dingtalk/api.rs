//! DingTalk's HTTP API as hookbridge calls it: every answer judged by its body (HTTP 200 on
//! failure, `errcode 88` wrapping the real code in `sub_code`, HTML for an IP ban) into the
//! error classes (token, throttled, transient, permanent), and every call paced per API through the app's
//! [`Pacer`].

use std::time::Duration;

use serde_json::Value;
use tracing::warn;

use crate::event::{Failure, Millis};
use crate::pacer::{Fleet, Pacer};

pub const SEND_PATH: &str = "/topapi/message/corpconversation/asyncsend_v2";
pub const STATUS_BAR_PATH: &str = "/topapi/message/corpconversation/status_bar/update";
pub const RECALL_PATH: &str = "/topapi/message/corpconversation/recall";
pub const TOKEN_PATH: &str = "/gettoken";

pub use crate::connectors::token::ApiError;

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
    let message = match (code, caller_ip(text)) {
        (60020, Some(ip)) => format!(
            "DingTalk {path}: errcode 60020: this call came from {ip}, which the app's 服务器出口IP \
             list does not hold (add it; on AWS, deploy with EgressMode for a fixed address: \
             hookbridge setup dingtalk --stack NAME)"
        ),
        _ => format!("DingTalk {path}: errcode {code} {text}{}", hint(code)),
    };
    match class(code, path == TOKEN_PATH) {
        Class::Token => Err(ApiError::TokenExpired(message)),
        Class::Throttled(wait) => throttled(message, wait),
        Class::Transient => transient(message),
        Class::Permanent => Err(ApiError::Failed(Failure::Permanent(message))),
    }
}

/// The address DingTalk saw a refused call come from: its 60020 message says `request ip=…`.
pub fn caller_ip(errmsg: &str) -> Option<&str> {
    let at = errmsg.find("request ip=")? + "request ip=".len();
    let ip = errmsg[at..].split([' ', ',', ')', ']']).next()?;
    ip.parse::<std::net::IpAddr>().is_ok().then_some(ip)
}

/// An IP ban (more than 10 000 calls in 20 s from one IP) lasts 5 minutes.
const IP_BAN_MS: Millis = 5 * 60 * 1000;

pub(super) fn as_code(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

enum Class {
    Token,
    /// Back-pressure: slow down and try again after this many ms, spending no attempt.
    Throttled(Millis),
    Transient,
    Permanent,
}

/// DingTalk's error codes by what the sender should do (its error-code and rate-limit pages).
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

pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    /// This app's pace per API, shared by every sender task of the process.
    pacer: Pacer,
    /// And by every process of the deployment.
    fleet: Fleet,
}

impl Api {
    pub(super) fn new(http: reqwest::Client, base_url: &str, max_qps: u32, fleet: Fleet) -> Self {
        Api {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            pacer: Pacer::new(max_qps),
            fleet,
        }
    }

    pub(super) async fn call(
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
        if let Err(held) = self.fleet.take(path).await {
            return Err(ApiError::Failed(Failure::Throttled {
                reason: format!(
                    "DingTalk {path}: the deployment's senders use this second's calls"
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

    /// DingTalk's FAQ shows the refused caller's address in the 60020 message, also when it
    /// comes wrapped in errcode 88.
    #[test]
    fn a_refused_caller_is_told_its_address() {
        let faq = "请参考FAQ：https://open-doc.dingtalk.com/microapp/faquestions/cvbtph。错误原因：访问ip不在白名单之中,request ip=203.119.196.81 appKey(dingeqqpkv3artfbxxx)";
        assert_eq!(caller_ip(faq), Some("203.119.196.81"));
        let wrapped = "ding talk error[subcode=60020,submsg=访问ip不在白名单之中,request ip=14.153.172.241 appKey(ding-example)]";
        assert_eq!(caller_ip(wrapped), Some("14.153.172.241"));
        assert_eq!(caller_ip("访问ip不在白名单之中"), None);
        assert_eq!(caller_ip("request ip=nonsense"), None);
        let body = serde_json::json!({"errcode": 60020, "errmsg": faq}).to_string();
        let Err(ApiError::Failed(Failure::Permanent(m))) = class_of(&body) else {
            panic!()
        };
        assert!(
            m.contains("came from 203.119.196.81") && m.contains("EgressMode"),
            "{m}"
        );
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
}
