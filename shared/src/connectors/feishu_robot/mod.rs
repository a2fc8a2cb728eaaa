//! Feishu / Lark custom bots (自定义机器人): `POST …/open-apis/bot/v2/hook/<token>`, signed in
//! the body (签名校验: `timestamp` in seconds and `sign`) when the bot has a secret, 100
//! messages a minute and 5 a second per bot. `render.rs` has the bodies; this file is the
//! config, the signature, the answers' error classes and the connector the sender loop calls
//! (posting as every group robot does, `connectors/robots.rs`).

mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tracing::warn;

pub use render::*;

use super::robots::{self, Robot, Robots};
use super::{Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::{Failure, Millis, now_ms};
use crate::pacer::RateWindow;
use crate::setup::{ConfigError, SecretRef, Secrets};

pub const CONNECTOR: &str = "feishu_robot";
/// How long a bot that sent too fast is left alone (Feishu does not say for custom bots).
pub const THROTTLE_WAIT: Millis = 60 * 1000;

// ---- config: [connectors.feishu_robot.<name>] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuRobotConfig {
    /// The bot's webhook URL (`https://open.feishu.cn/open-apis/bot/v2/hook/…`, or Lark's
    /// `https://open.larksuite.com/…`), a secret reference: whoever has it can post. Absent:
    /// dry-run.
    pub webhook: Option<SecretRef>,
    /// The 签名校验 secret, a secret reference, when the bot's security setting has it.
    pub secret: Option<SecretRef>,
    /// The bot's keyword, when its security setting is 自定义关键词: a message that does not
    /// contain it gets it in front of its title.
    pub keyword: Option<String>,
    /// Messages a minute at most (Feishu's limit per custom bot is 100).
    #[serde(default = "default_per_minute")]
    pub max_per_minute: u32,
    /// Messages a second at most (Feishu's limit is 5).
    #[serde(default = "default_per_second")]
    pub max_per_second: u32,
    /// Seconds each post may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_per_minute() -> u32 {
    100
}

fn default_per_second() -> u32 {
    5
}

/// `sign` for `timestamp` (seconds): Base64 of HmacSHA256 keyed with `timestamp + "\n" +
/// secret` over nothing (Feishu keys the MAC with the string to sign, unlike DingTalk).
pub fn sign(timestamp: i64, secret: &str) -> String {
    let key = format!("{timestamp}\n{secret}");
    let mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    BASE64.encode(mac.finalize().into_bytes())
}

/// Judges a bot's answer by its body's `code` (older answers say `StatusCode`).
pub fn judge(status: u16, body: &[u8]) -> Result<(), Failure> {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let code = answer
        .as_ref()
        .and_then(|v| v["code"].as_i64().or_else(|| v["StatusCode"].as_i64()));
    let message = answer
        .as_ref()
        .and_then(|v| v["msg"].as_str().or_else(|| v["StatusMessage"].as_str()))
        .unwrap_or_default();
    let said = |code: i64| format!("Feishu bot code {code}: {message}");
    match code {
        Some(0) => Ok(()),
        Some(code @ (11232 | 99991400)) => Err(Failure::Throttled {
            reason: said(code),
            wait: THROTTLE_WAIT,
        }),
        Some(code @ 19021) => Err(Failure::Permanent(format!(
            "{} (签名校验 failed: check the bot's secret, and this server's clock)",
            said(code)
        ))),
        Some(code @ 19024) => Err(Failure::Permanent(format!(
            "{} (the message lacks the bot's keyword: set keyword in the bot's section)",
            said(code)
        ))),
        Some(code @ 19022) => Err(Failure::Permanent(format!(
            "{} (add the senders' address to the bot's IP whitelist: hookbridge setup feishu_robot)",
            said(code)
        ))),
        Some(code @ 19001) => Err(Failure::Permanent(format!(
            "{} (the webhook's token is wrong or the bot was removed: check webhook)",
            said(code)
        ))),
        Some(code) => Err(Failure::Permanent(said(code))),
        None if status == 429 => Err(Failure::Throttled {
            reason: "Feishu answered HTTP 429".into(),
            wait: THROTTLE_WAIT,
        }),
        None => Err(Failure::Transient(format!(
            "the Feishu bot webhook answered HTTP {status} without a code"
        ))),
    }
}

// ---- the connector ----

/// The part the registry builds: its robots, as one [`Robots`] connector.
pub struct FeishuRobot;

/// The webhook, and the body with `timestamp` and `sign` when the bot has a secret.
fn request(robot: &Robot<Option<String>>, webhook: &str, body: &Value) -> (String, Value) {
    let mut body = body.clone();
    if let Some(secret) = &robot.own {
        let timestamp = now_ms() / 1000;
        body["timestamp"] = json!(timestamp.to_string());
        body["sign"] = json!(sign(timestamp, secret));
    }
    (webhook.to_owned(), body)
}

#[async_trait]
impl ConnectorPart for FeishuRobot {
    type Config = BTreeMap<String, FeishuRobotConfig>;
    type RouteOptions = super::NoRouteOptions;
    /// A bot's security settings may list the addresses it takes posts from.
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "A Feishu custom bot",
        place: "its 安全设置 → IP 白名单 when that is on (the group → 设置 → 群机器人 → the bot); a bot \
            secured by keyword or 签名校验 needs nothing here",
    });

    fn check(robots: &Self::Config) -> Result<(), ConfigError> {
        let each = robots
            .iter()
            .map(|(name, r)| (name, r.webhook.is_some(), r.secret.is_some()));
        robots::check(CONNECTOR, each)
    }

    fn render(robots: &Self::Config) -> Arc<dyn Render> {
        let keywords = robots
            .iter()
            .map(|(name, r)| (name.clone(), r.keyword.clone()))
            .collect();
        Arc::new(Style { keywords })
    }

    async fn build(
        robots: &Self::Config,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let mut built = BTreeMap::new();
        let timeout = robots.values().map(|r| r.timeout_secs).max().unwrap_or(10);
        for (name, r) in robots {
            let resolve = async |s: &Option<SecretRef>| robots::resolve(secrets, s).await;
            let robot = Robot {
                webhook: resolve(&r.webhook).await?,
                window: RateWindow::per_minute(r.max_per_minute).and_per_second(r.max_per_second),
                own: resolve(&r.secret).await?,
            };
            if robot.webhook.is_none() {
                warn!(robot = %name, "Feishu bot without a webhook: dry-run, posts are recorded, not sent");
            }
            built.insert(name.clone(), robot);
        }
        Ok(Arc::new(Robots::new(
            CONNECTOR,
            built,
            timeout,
            judge,
            request,
            test_post,
            ports.usage.clone(),
        )?))
    }
}

/// The test message `hookbridge check --send-test` posts.
fn test_post(_: &Robot<Option<String>>) -> Value {
    json!({ "msg_type": "text", "content": {
            "text": "hookbridge check: a test message, nothing to do" } })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector Feishu's documented Python (hmac.new(f"{timestamp}\\n{secret}", b"",
    /// sha256), Base64) gives for this timestamp and secret.
    #[test]
    fn sign_keys_the_mac_with_the_string_to_sign() {
        assert_eq!(
            sign(1_599_360_473, "secret"),
            "q4jswNiMy51J5JuQV566yJat0/lQ/c+22kINzUgKsGU="
        );
    }

    #[test]
    fn answers_are_judged_by_code() {
        assert_eq!(
            judge(200, br#"{"code":0,"data":{},"msg":"success"}"#),
            Ok(())
        );
        assert_eq!(
            judge(200, br#"{"StatusCode":0,"StatusMessage":"success"}"#),
            Ok(())
        );
        assert!(matches!(
            judge(200, br#"{"code":11232,"msg":"frequency limited"}"#),
            Err(Failure::Throttled { .. })
        ));
        assert!(matches!(judge(429, b""), Err(Failure::Throttled { .. })));
        let Err(Failure::Permanent(m)) = judge(
            200,
            br#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
        ) else {
            panic!()
        };
        assert!(m.contains("check the bot's secret"), "{m}");
        assert!(matches!(judge(502, b"<html>"), Err(Failure::Transient(_))));
    }

    #[test]
    fn the_signature_goes_in_the_body_when_the_bot_has_a_secret() {
        let robot = |own| Robot {
            webhook: None,
            window: RateWindow::per_minute(1),
            own,
        };
        let body = json!({ "msg_type": "text" });
        let (url, signed) = request(&robot(Some("s".into())), "https://f/hook/t", &body);
        assert_eq!(url, "https://f/hook/t");
        let ts: i64 = signed["timestamp"].as_str().unwrap().parse().unwrap();
        assert!((ts - now_ms() / 1000).abs() <= 1);
        assert_eq!(signed["sign"], sign(ts, "s"));
        let (_, plain) = request(&robot(None), "https://f/hook/t", &body);
        assert_eq!(plain, body);
    }
}
