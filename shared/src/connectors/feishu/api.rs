//! Feishu's (and Lark's) server API as hookbridge calls it: `tenant_access_token`, then
//! `Authorization: Bearer` on `im/v1/messages` calls; answers judged by `code`, calls paced per
//! process.

use reqwest::Method;
use serde_json::Value;

use crate::connectors::token::{self, ApiError, THROTTLE_WAIT};
use crate::event::{Failure, Millis};
use crate::pacer::Pacer;

pub const TOKEN_PATH: &str = "auth/v3/tenant_access_token/internal";
pub const MESSAGES_PATH: &str = "im/v1/messages";

pub struct Api {
    http: reqwest::Client,
    base: String,
    pacer: Pacer,
}

impl Api {
    pub fn new(http: reqwest::Client, base_url: &str, max_qps: u32) -> Self {
        Api {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            pacer: Pacer::new(max_qps),
        }
    }

    /// One call to `open-apis/<path>`, with the token when there is one.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        // Paced per API, not per message id.
        let api = if path.starts_with(MESSAGES_PATH) {
            MESSAGES_PATH
        } else {
            TOKEN_PATH
        };
        let mut request = self
            .http
            .request(method, format!("{}/open-apis/{path}", self.base))
            .query(query);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        token::paced(
            &self.pacer,
            "Feishu",
            api,
            request,
            |status, headers, bytes| judge(api, status, reset(headers), bytes),
        )
        .await
    }
}

/// The codes that say a message's recipient cannot get it: not found, or out of the app's
/// availability.
pub const NOT_REACHABLE: &[i64] = &[230013, 230001, 99992361, 99992364];

/// How long a throttled call waits: Feishu says it in `x-ogw-ratelimit-reset` (seconds until
/// the limit's window recovers, 1 for the per-second limits); a minute when it does not.
pub fn reset(headers: &reqwest::header::HeaderMap) -> Millis {
    headers
        .get("x-ogw-ratelimit-reset")
        .and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok())
        .map_or(THROTTLE_WAIT.as_millis() as Millis, |s| {
            Millis::from(s.clamp(1, 3600)) * 1000
        })
}

/// Reads an answer by its `code` (and HTTP 429, Feishu's general limit); a throttle waits `wait`.
pub fn judge(api: &str, status: u16, wait: Millis, bytes: &[u8]) -> Result<Value, ApiError> {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Err(ApiError::Failed(if status == 429 {
            Failure::Throttled {
                reason: format!("Feishu {api}: HTTP 429"),
                wait,
            }
        } else {
            Failure::Transient(format!("Feishu {api} answered HTTP {status} without JSON"))
        }));
    };
    let code = v["code"].as_i64().unwrap_or(-1);
    let said = format!(
        "Feishu {api} code {code}: {}",
        v["msg"].as_str().unwrap_or_default()
    );
    let failed = |f| Err(ApiError::Failed(f));
    match code {
        0 => Ok(v),
        // A missing, invalid or expired token: fetch another once (the official SDKs retry
        // on 99991663, 99991664 and 99991671; the error code table names the others).
        99991661 | 99991663 | 99991664 | 99991668 | 99991671 | 99991677 if api != TOKEN_PATH => {
            Err(ApiError::TokenExpired(said))
        }
        99991400 | 230020 => failed(Failure::Throttled { reason: said, wait }),
        _ if status == 429 => failed(Failure::Throttled { reason: said, wait }),
        _ if status >= 500 => failed(Failure::Transient(said)),
        10003 | 10014 => failed(Failure::Permanent(format!(
            "{said} (the app id or secret is wrong: check connectors.feishu)"
        ))),
        99991401 => failed(Failure::Permanent(format!(
            "{said} (this address is not in the app's IP whitelist: hookbridge setup feishu prints what to list)"
        ))),
        230006 => failed(Failure::Permanent(format!(
            "{said} (the app's bot is not enabled: 开发者后台 → 应用能力 → 机器人, then publish a version)"
        ))),
        _ => failed(Failure::Permanent(said)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_code() {
        assert!(
            judge(
                MESSAGES_PATH,
                200,
                0,
                br#"{"code":0,"data":{"message_id":"om_1"}}"#
            )
            .is_ok()
        );
        for code in [99991663, 99991671] {
            let body = format!(r#"{{"code":{code},"msg":"Invalid access token"}}"#);
            assert!(
                matches!(
                    judge(MESSAGES_PATH, 400, 0, body.as_bytes()),
                    Err(ApiError::TokenExpired(_))
                ),
                "{code}: the official SDK refetches the token on it"
            );
        }
        assert!(matches!(
            judge(TOKEN_PATH, 400, 0, br#"{"code":10014,"msg":"app secret invalid"}"#),
            Err(ApiError::Failed(Failure::Permanent(m))) if m.contains("secret is wrong")
        ));
        assert!(matches!(
            judge(
                MESSAGES_PATH,
                429,
                2000,
                br#"{"code":99991400,"msg":"request trigger frequency limit"}"#
            ),
            Err(ApiError::Failed(Failure::Throttled { wait: 2000, .. }))
        ));
        assert!(matches!(
            judge(MESSAGES_PATH, 429, 1000, b""),
            Err(ApiError::Failed(Failure::Throttled { .. }))
        ));
        assert!(matches!(
            judge(MESSAGES_PATH, 502, 0, b"<html>"),
            Err(ApiError::Failed(Failure::Transient(_)))
        ));
        assert!(matches!(
            judge(
                MESSAGES_PATH,
                400,
                0,
                br#"{"code":230013,"msg":"Bot has NO availability to this user."}"#
            ),
            Err(ApiError::Failed(Failure::Permanent(_)))
        ));
    }

    #[test]
    fn a_throttle_waits_as_long_as_feishu_says() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(reset(&headers), 60_000, "no header: a minute");
        for (said, wait) in [
            ("1", 1000),
            (" 52 ", 52_000),
            ("0", 1000),
            ("999999", 3_600_000),
        ] {
            headers.insert("x-ogw-ratelimit-reset", said.parse().unwrap());
            assert_eq!(reset(&headers), wait, "x-ogw-ratelimit-reset: {said}");
        }
        headers.insert("x-ogw-ratelimit-reset", "soon".parse().unwrap());
        assert_eq!(reset(&headers), 60_000, "unreadable: a minute");
    }
}
