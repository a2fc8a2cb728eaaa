//! WeCom's server API as hookbridge calls it: `GET /cgi-bin/gettoken`, `POST /cgi-bin/<path>?
//! access_token=…`, answers judged by `errcode` (HTTP 200 either way), calls paced per process.

use serde_json::Value;

use crate::event::Failure;
use crate::pacer::Pacer;

pub const TOKEN_PATH: &str = "gettoken";
pub const SEND_PATH: &str = "message/send";
pub const UPDATE_CARD_PATH: &str = "message/update_template_card";
pub const RECALL_PATH: &str = "message/recall";

pub use crate::connectors::token::ApiError;
use crate::connectors::token::{self, THROTTLE_WAIT};

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

    /// One call: `GET` without a body, `POST` with one. The query carries the token or the
    /// app's secret: errors are reported without the URL.
    pub async fn call(
        &self,
        path: &'static str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/cgi-bin/{path}", self.base);
        let request = match body {
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        token::paced(
            &self.pacer,
            "WeCom",
            path,
            request.query(query),
            |status, _, bytes| judge(path, status, bytes),
        )
        .await
    }
}

/// Reads an answer by its `errcode`.
pub fn judge(path: &str, status: u16, bytes: &[u8]) -> Result<Value, ApiError> {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Err(ApiError::Failed(Failure::Transient(format!(
            "WeCom {path} answered HTTP {status} without JSON"
        ))));
    };
    let code = v["errcode"].as_i64().unwrap_or(0);
    let message = v["errmsg"].as_str().unwrap_or_default();
    // WeCom's errmsg ends in a hint naming the request and the caller's address.
    let message = message.split(", hint:").next().unwrap_or_default();
    let said = format!("WeCom {path} errcode {code}: {message}");
    let failed = |f| Err(ApiError::Failed(f));
    match code {
        0 => Ok(v),
        // Invalid, expired or missing access_token: refresh it once.
        40014 | 42001 | 41001 if path != TOKEN_PATH => Err(ApiError::TokenExpired(said)),
        // Too many calls, or too many at once.
        45009 | 45033 => failed(Failure::Throttled {
            reason: said,
            wait: THROTTLE_WAIT.as_millis() as i64,
        }),
        -1 => failed(Failure::Transient(said)),
        60020 => failed(Failure::Permanent(format!(
            "{said} (this address is not in the app's 企业可信IP: hookbridge setup wecom prints what to list)"
        ))),
        40001 | 40091 => failed(Failure::Permanent(format!(
            "{said} (the app's secret is wrong, or belongs to another app: check connectors.wecom.secret)"
        ))),
        40013 => failed(Failure::Permanent(format!(
            "{said} (the corp id is wrong: check connectors.wecom.corp_id)"
        ))),
        _ => failed(Failure::Permanent(said)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_errcode() {
        assert!(
            judge(
                SEND_PATH,
                200,
                br#"{"errcode":0,"errmsg":"ok","msgid":"m"}"#
            )
            .is_ok()
        );
        assert!(matches!(
            judge(
                SEND_PATH,
                200,
                br#"{"errcode":42001,"errmsg":"access_token expired"}"#
            ),
            Err(ApiError::TokenExpired(_))
        ));
        assert!(matches!(
            judge(TOKEN_PATH, 200, br#"{"errcode":40001,"errmsg":"invalid credential"}"#),
            Err(ApiError::Failed(Failure::Permanent(m))) if m.contains("secret is wrong")
        ));
        assert!(matches!(
            judge(
                SEND_PATH,
                200,
                br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#
            ),
            Err(ApiError::Failed(Failure::Throttled { .. }))
        ));
        let e = judge(
            SEND_PATH,
            200,
            br#"{"errcode":60020,"errmsg":"not allow to access from your ip, hint: [x], from ip: 1.2.3.4"}"#,
        );
        assert!(
            matches!(e, Err(ApiError::Failed(Failure::Permanent(m))) if m.contains("企业可信IP") && !m.contains("1.2.3.4"))
        );
        assert!(matches!(
            judge(SEND_PATH, 502, b"<html>"),
            Err(ApiError::Failed(Failure::Transient(_)))
        ));
    }
}
