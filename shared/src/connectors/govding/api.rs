//! The 浙政钉 open platform as hookbridge calls it: every request signed like
//! the official SDK, form-encoded, and every answer judged through both error envelopes into
//! the error classes, with "重复" on a resend meaning the first attempt got through.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::Value;
use sha2::Sha256;

use super::{Algorithm, GovDingConfig};
use crate::connectors::CallCounter;
use crate::event::Failure;

pub const SEND_PATH: &str = "/message/workNotification";
pub const REVOKE_PATH: &str = "/message/revoke";
pub const TOKEN_PATH: &str = "/gettoken.json";
/// Employee codes to accountIds (at most 100 codes a call).
pub const EMPLOYEES_PATH: &str = "/mozi/employee/listEmployeeAccountIds";
/// Management of the gateway's callbacks (the SDK's request classes).
pub const REGISTER_PATH: &str = "/openplatform/message/register_event_callback";
pub const CALLBACKS_PATH: &str = "/openplatform/message/query_callback_define";
pub const FAILED_PATH: &str = "/openplatform/message/query_callback_failed";
pub const RETRY_PATH: &str = "/openplatform/message/retry_callback_failed";

/// The string the SDK signs: method, timestamp, nonce and path on their own lines, then, if
/// there are any, the parameters `key=value` (raw values) sorted by key case-insensitively
/// (a repeated key by value), joined by `&`.
pub fn string_to_sign(
    method: &str,
    timestamp: &str,
    nonce: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .copied()
        .collect();
    sorted.sort_by(|a, b| {
        a.0.to_lowercase()
            .cmp(&b.0.to_lowercase())
            .then_with(|| a.1.cmp(b.1))
    });
    let mut text = format!("{method}\n{timestamp}\n{nonce}\n{path}");
    if !sorted.is_empty() {
        let pairs: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
        text.push('\n');
        text.push_str(&pairs.join("&"));
    }
    text
}

/// `X-Hmac-Auth-Signature` for `text`: Base64 HMAC-SHA256, or the MD5 variant's lowercase hex
/// of `md5(text + "\n" + secret)`.
pub fn signature(algorithm: Algorithm, text: &str, secret: &str) -> String {
    match algorithm {
        Algorithm::HmacSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(text.as_bytes());
            BASE64.encode(mac.finalize().into_bytes())
        }
        Algorithm::Md5 => {
            let digest = Md5::digest(format!("{text}\n{secret}").as_bytes());
            hex::encode(digest)
        }
    }
}

/// What a call came back with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Done; the innermost `content` (e.g. `{"msgId": …}`).
    Done(Value),
    /// "重复": this `bizMsgId` was sent before, so an earlier attempt got through.
    AlreadySent(String),
}

/// Judges an answer: HTTP status, then the gateway envelope (`success`, `Code`/`Message` or
/// `errorCode`/`errorMsg`), then each `content` level (a JSON string is parsed), where
/// `success` and `responseCode` decide.
pub fn judge(
    path: &str,
    status: u16,
    body: &[u8],
    duplicate_codes: &[String],
) -> Result<Answer, Failure> {
    let head = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(200)
            .collect::<String>()
    };
    if status >= 500 || status == 429 {
        return Err(Failure::Transient(format!(
            "浙政钉 {path}: HTTP {status} {}",
            head()
        )));
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return Err(Failure::Transient(format!(
            "浙政钉 {path}: HTTP {status} with a non-JSON answer: {:?}",
            head()
        )));
    };
    loop {
        if let Some(problem) = problem(&v) {
            let duplicate = problem.contains("重复")
                || duplicate_codes.iter().any(|c| problem.contains(c.as_str()));
            if duplicate {
                return Ok(Answer::AlreadySent(problem));
            }
            return Err(Failure::Permanent(format!(
                "浙政钉 {path}: {problem}{}",
                hint(&problem)
            )));
        }
        match v.get("content") {
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(inner) if inner.is_object() => v = inner,
                _ => return Ok(Answer::Done(Value::String(s.clone()))),
            },
            Some(inner @ Value::Object(o))
                if o.contains_key("success")
                    || o.contains_key("responseCode")
                    || o.contains_key("content") =>
            {
                v = inner.clone();
            }
            Some(inner) => return Ok(Answer::Done(inner.clone())),
            None if status >= 300 || status == 203 => {
                return Err(Failure::Permanent(format!(
                    "浙政钉 {path}: HTTP {status} {}",
                    head()
                )));
            }
            None => return Ok(Answer::Done(v.get("data").cloned().unwrap_or(v))),
        }
    }
}

/// The error one envelope level reports, if any: `{Code}: {Message} {_RequestId}
/// ({bizErrorCode})` for the gateway's, `responseCode`/`responseMessage` for the business one.
fn problem(v: &Value) -> Option<String> {
    let text = |k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let failed = v.get("success").and_then(Value::as_bool) == Some(false);
    let code = text("responseCode");
    if !failed && (code.is_empty() || code == "0") {
        return None;
    }
    let parts = [
        text("Code"),
        text("errorCode"),
        text("Message"),
        text("errorMsg"),
        if code == "0" { String::new() } else { code },
        text("responseMessage"),
        text("_RequestId"),
        text("bizErrorCode"),
    ];
    let said: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    Some(if said.is_empty() {
        "the call failed and said nothing more".into()
    } else {
        said.join(" ")
    })
}

/// What to check, for the errors that are configuration.
fn hint(problem: &str) -> &'static str {
    if problem.contains("SignatureDoesNotMatch") || problem.contains("OPF-B001-05-16-0009") {
        " (check connectors.govding app_key, app_secret and base_url)"
    } else if problem.contains("OPF-B001-05-16-0002") {
        " (the app has not subscribed to this API: grant it in the console, 接口授权)"
    } else if problem.contains("白名单") {
        " (add this host's egress IP to the app's whitelist)"
    } else {
        ""
    }
}

/// Signed, form-encoded POSTs to one gateway.
pub struct Gateway {
    http: reqwest::Client,
    base_url: String,
    app_key: String,
    secret: String,
    algorithm: Algorithm,
    auth_ip: Option<String>,
    auth_mac: Option<String>,
    duplicate_codes: Vec<String>,
    /// Where the sender counts its calls (the CLI's tools do not).
    calls: Option<CallCounter>,
}

impl Gateway {
    pub fn new(
        config: &GovDingConfig,
        app_key: String,
        secret: String,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::http::client(Duration::from_secs(config.timeout_secs))?;
        Ok(Gateway {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            app_key,
            secret,
            algorithm: config.algorithm,
            auth_ip: config.auth_ip.clone(),
            auth_mac: config.auth_mac.clone(),
            duplicate_codes: config.duplicate_codes.clone(),
            calls: None,
        })
    }

    /// The same, counting its answered calls for `hookbridge status`.
    pub fn counted(self, calls: CallCounter) -> Self {
        Gateway {
            calls: Some(calls),
            ..self
        }
    }

    /// POSTs `params` (empty ones left out, as they are left out of the signature) to `path`.
    pub async fn post(&self, path: &str, params: &[(&str, &str)]) -> Result<Answer, Failure> {
        self.call(http::Method::POST, path, params).await
    }

    /// A signed GET with `params` in the query (only `/gettoken.json` is documented as one).
    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Answer, Failure> {
        self.call(http::Method::GET, path, params).await
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Answer, Failure> {
        let params: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .copied()
            .collect();
        let beijing = crate::event::beijing();
        let timestamp = chrono::Utc::now()
            .with_timezone(&beijing)
            .format("%Y-%m-%dT%H:%M:%S%.3f+08:00")
            .to_string();
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let nonce = format!("{nanos}{:04}", fastrand::u16(..10_000));
        let text = string_to_sign(method.as_str(), &timestamp, &nonce, path, &params);
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        let url = format!("{}{path}", self.base_url);
        let mut req = if method == http::Method::GET {
            self.http.get(format!("{url}?{form}"))
        } else {
            self.http
                .post(url)
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )
                .body(form)
        };
        req = req
            .header("apiKey", &self.app_key)
            .header("X-Hmac-Auth-Timestamp", &timestamp)
            .header("X-Hmac-Auth-Nonce", &nonce)
            .header("X-Hmac-Auth-Version", "1.0")
            .header(
                "X-Hmac-Auth-Signature",
                signature(self.algorithm, &text, &self.secret),
            );
        if self.algorithm == Algorithm::Md5 {
            req = req.header("X-Hmac-Auth-Algorithm", "md5");
        }
        if let Some(ip) = &self.auth_ip {
            req = req.header("X-Hmac-Auth-IP", ip);
        }
        if let Some(mac) = &self.auth_mac {
            req = req.header("X-Hmac-Auth-MAC", mac);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("浙政钉 {path}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Failure::Transient(format!("浙政钉 {path}: {e}")))?;
        let answer = judge(path, status, &body, &self.duplicate_codes);
        if let (Ok(_), Some(calls)) = (&answer, &self.calls) {
            calls.count();
        }
        answer
    }
}

impl Gateway {
    /// Registers `callback_url` for `event_tag`; the gateway checks the URL answers first.
    pub async fn register(&self, event_tag: &str, callback_url: &str) -> Result<Answer, Failure> {
        self.post(
            REGISTER_PATH,
            &[("eventTag", event_tag), ("callbackUrl", callback_url)],
        )
        .await
    }

    /// The registered callbacks.
    pub async fn callbacks(&self) -> Result<Answer, Failure> {
        self.post(CALLBACKS_PATH, &[]).await
    }

    /// Callbacks that failed all of the gateway's retries.
    pub async fn failed(&self) -> Result<Answer, Failure> {
        self.post(FAILED_PATH, &[]).await
    }

    /// Has the gateway deliver a failed callback again.
    pub async fn retry(&self, failed_id: &str) -> Result<Answer, Failure> {
        self.post(RETRY_PATH, &[("eventCallbackFailedId", failed_id)])
            .await
    }

    /// An access token and its lifetime in seconds (`expiresIn` may be text; 7200 when absent).
    pub async fn token(&self) -> Result<(String, i64), Failure> {
        let answer = self
            .get(
                TOKEN_PATH,
                &[("appkey", &self.app_key), ("appsecret", &self.secret)],
            )
            .await?;
        let Answer::Done(content) = answer else {
            return Err(Failure::Permanent(format!(
                "浙政钉 {TOKEN_PATH}: unexpected answer"
            )));
        };
        let data = content.get("data").unwrap_or(&content);
        let token = data
            .get("accessToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Transient(format!("浙政钉 {TOKEN_PATH}: no accessToken in {content}"))
            })?;
        let expires = match data.get("expiresIn") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|e| *e > 0)
        .unwrap_or(7200);
        Ok((token.to_owned(), expires))
    }

    /// Recalls a sent work notification by its `bizMsgId`.
    pub async fn revoke(
        &self,
        tenant_id: &str,
        biz_msg_id: &str,
        msg_type: &str,
        msg_app: &str,
    ) -> Result<Answer, Failure> {
        let params = [
            ("tenantId", tenant_id),
            ("bizMsgId", biz_msg_id),
            ("msgType", msg_type),
            ("msgApp", msg_app),
        ];
        self.post(REVOKE_PATH, &params).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TS: &str = "2024-05-01T10:00:00.000+08:00";

    /// Known-good signatures of the gateway's algorithm.
    #[test]
    fn signatures_match_the_protocol_vectors() {
        let msg = r#"{"msgtype":"text","text":{"content":"测试通知"}}"#;
        let cases = [
            (
                string_to_sign(
                    "POST",
                    TS,
                    "17145288000001234",
                    "/message/workNotification",
                    &[
                        ("tenantId", "196729"),
                        ("receiverIds", "10001,10002"),
                        ("msg", msg),
                        ("bizMsgId", "hb-7f3a9c01"),
                    ],
                ),
                "JOUR+r8l1qN+mpi9XsnDWf0HqXgJ0r9m+mSpi0oXp8Q=",
                "68bb80b7b2317fb78b7aa9534b0005af",
            ),
            (
                string_to_sign(
                    "GET",
                    TS,
                    "17145288000005678",
                    "/gettoken.json",
                    &[("appsecret", "test-secret"), ("appkey", "test-app")],
                ),
                "h89fu+/FyC29582TUCBFNvYDN8zcADrBLMrZMwl6i+w=",
                "21c16bcc19ebd3a2fb58e0950538377c",
            ),
            (
                string_to_sign(
                    "POST",
                    TS,
                    "17145288000009999",
                    "/openplatform/message/query_callback_define",
                    &[],
                ),
                "O6ARxA4FW1WkqmFsBwOrv5R9c5fMSjsDAc1jX4rrzEs=",
                "dcaae536c0baeb7bf20f293065e260e9",
            ),
        ];
        for (text, hmac, md5) in cases {
            assert_eq!(
                signature(Algorithm::HmacSha256, &text, "test-secret"),
                hmac,
                "{text}"
            );
            assert_eq!(
                signature(Algorithm::Md5, &text, "test-secret"),
                md5,
                "{text}"
            );
        }
    }

    #[test]
    fn keys_sort_case_insensitively_and_empty_params_are_left_out() {
        let text = string_to_sign(
            "POST",
            TS,
            "n",
            "/p",
            &[("b", "2"), ("A", "1"), ("c", ""), ("a", "0")],
        );
        assert_eq!(text, format!("POST\n{TS}\nn\n/p\na=0&A=1&b=2"));
    }

    #[test]
    fn answers_are_judged_through_both_envelopes() {
        let judge = |status, body: Value| judge("/p", status, body.to_string().as_bytes(), &[]);
        assert_eq!(
            judge(200, json!({"success": true, "content": {"msgId": "m1"}})),
            Ok(Answer::Done(json!({"msgId": "m1"})))
        );
        let nested = json!({"success": true, "content": "{\"success\":true,\"content\":{\"msgId\":\"m2\"}}"});
        assert_eq!(judge(200, nested), Ok(Answer::Done(json!({"msgId": "m2"}))));
        let business = json!({"success": true, "content": {"success": true, "responseCode": "0", "data": {"x": 1}}});
        assert_eq!(judge(200, business), Ok(Answer::Done(json!({"x": 1}))));

        let Err(Failure::Permanent(m)) = judge(
            200,
            json!({"success": false, "Code": "OPF-B001-05-16-0009", "Message": "SignatureDoesNotMatch", "_RequestId": "r1"}),
        ) else {
            panic!()
        };
        assert!(
            m.contains("SignatureDoesNotMatch r1") && m.contains("check connectors.govding"),
            "{m}"
        );
        let Err(Failure::Permanent(m)) = judge(
            200,
            json!({"success": false, "errorCode": "E1", "errorMsg": "访问IP不在白名单中"}),
        ) else {
            panic!()
        };
        assert!(
            m.contains("E1 访问IP不在白名单中") && m.contains("whitelist"),
            "{m}"
        );
        let Err(Failure::Permanent(m)) = judge(
            200,
            json!({"success": true, "content": {"success": false, "responseCode": "400", "responseMessage": "参数错误"}}),
        ) else {
            panic!()
        };
        assert!(m.contains("400 参数错误"), "{m}");

        let repeat = json!({"success": true, "content": {"success": false, "responseCode": "233", "responseMessage": "bizMsgId重复"}});
        assert!(matches!(judge(200, repeat), Ok(Answer::AlreadySent(_))));
        let coded = json!({"success": false, "Code": "DUP_1", "Message": "dup"});
        let known = [String::from("DUP_1")];
        assert!(matches!(
            super::judge("/p", 200, coded.to_string().as_bytes(), &known),
            Ok(Answer::AlreadySent(_))
        ));

        assert!(matches!(judge(502, json!({})), Err(Failure::Transient(_))));
        assert!(matches!(
            super::judge("/p", 200, b"<html>", &[]),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            judge(403, json!({"message": "denied"})),
            Err(Failure::Permanent(_))
        ));
    }
}
