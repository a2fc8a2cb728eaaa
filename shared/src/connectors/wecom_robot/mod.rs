//! WeCom (企业微信) group robots (群机器人): `POST …/cgi-bin/webhook/send?key=…`, the key being the
//! robot's only secret, 20 messages a minute per robot. `render.rs` has the bodies; this file is
//! the config, the answers' error classes and the connector the sender loop calls (posting as
//! every group robot does, `connectors/robots.rs`).
//!
//! The minute window is per process: on AWS the sender runs as one instance at a time (reserved
//! concurrency 1 in `template.yaml`), so it is the robot's window fleet-wide.

mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

pub use render::*;

use super::robots::{self, Robot, Robots};
use super::{Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::{Failure, Millis};
use crate::pacer::RateWindow;
use crate::setup::{ConfigError, SecretRef, Secrets};

pub const CONNECTOR: &str = "wecom_robot";
/// Where a robot's key is posted when the config gives the key alone.
const WEBHOOK: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=";
/// How long a robot that sent too fast is left alone (WeCom does not say how long it refuses).
pub const THROTTLE_WAIT: Millis = 60 * 1000;

// ---- config: [connectors.wecom_robot.<name>] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComRobotConfig {
    /// The robot's webhook URL (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`) or its
    /// key alone, a secret reference: whoever has it can post to the group. Absent: dry-run.
    pub webhook: Option<SecretRef>,
    /// Messages a minute at most (WeCom's limit per robot is 20).
    #[serde(default = "default_per_minute")]
    pub max_per_minute: u32,
    /// Seconds each post may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_per_minute() -> u32 {
    20
}

/// The URL a configured webhook posts to: as given, or WeCom's with the key.
fn webhook_url(configured: &str) -> String {
    let configured = configured.trim();
    if configured.contains("://") {
        configured.to_owned()
    } else {
        format!("{WEBHOOK}{configured}")
    }
}

/// Judges a robot's answer by its body: `errcode 0` is success (WeCom answers HTTP 200 either
/// way).
pub fn judge(status: u16, body: &[u8]) -> Result<(), Failure> {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let Some(code) = answer.as_ref().and_then(|v| v["errcode"].as_i64()) else {
        return Err(Failure::Transient(format!(
            "the WeCom robot webhook answered HTTP {status} without an errcode"
        )));
    };
    let message = answer
        .as_ref()
        .and_then(|v| v["errmsg"].as_str())
        .unwrap_or_default();
    // WeCom's errmsg ends in a hint URL naming the request; the code and its text suffice.
    let message = message.split(", hint:").next().unwrap_or_default();
    let said = format!("WeCom robot errcode {code}: {message}");
    match code {
        0 => Ok(()),
        45009 => Err(Failure::Throttled {
            reason: said,
            wait: THROTTLE_WAIT,
        }),
        -1 => Err(Failure::Transient(said)),
        93000 => Err(Failure::Permanent(format!(
            "{said} (the robot's key is wrong or the robot was removed from its group: check webhook)"
        ))),
        _ => Err(Failure::Permanent(said)),
    }
}

// ---- the connector ----

/// The part the registry builds: its robots, as one [`Robots`] connector.
pub struct WeComRobot;

/// A WeCom robot's URL is its webhook (the key is in it), its body as stored.
fn request(_: &Robot<()>, webhook: &str, body: &Value) -> (String, Value) {
    (webhook.to_owned(), body.clone())
}

#[async_trait]
impl ConnectorPart for WeComRobot {
    type Config = BTreeMap<String, WeComRobotConfig>;
    type RouteOptions = super::NoRouteOptions;
    /// A group robot takes posts from anywhere; its key is the only guard.
    const CALLER_ALLOWLIST: Option<super::Allowlist> = None;

    fn check(robots: &Self::Config) -> Result<(), ConfigError> {
        robots::check(
            CONNECTOR,
            robots
                .iter()
                .map(|(name, r)| (name, r.webhook.is_some(), false)),
        )
    }

    /// Where the webhook comes from; a robot needs no address listed.
    #[cfg(feature = "cli")]
    fn setup(robots: Option<&Self::Config>, _: &crate::tools::Deployment) -> String {
        let mut out = String::from(
            "In the WeCom group: ⋯ → 群机器人 → 添加 → 新创建一个机器人, and copy its webhook \
             (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…). Keep it as a secret: \
             whoever has the key can post to the group. A group robot takes posts from any \
             address, so nothing needs listing.\n",
        );
        match robots {
            Some(robots) => {
                for (name, r) in robots {
                    let webhook = r.webhook.as_ref().map_or_else(
                        || "none: dry-run, posts are recorded, not sent".to_owned(),
                        |w| format!("read from {w:?}"),
                    );
                    out += &format!("  [connectors.wecom_robot.{name}] webhook {webhook}\n");
                }
            }
            None => out += "Then add [connectors.wecom_robot.<name>] with webhook = \"env:…\".\n",
        }
        out
    }

    fn render(robots: &Self::Config) -> Arc<dyn Render> {
        Arc::new(Style {
            robots: robots.keys().cloned().collect(),
        })
    }

    async fn build(
        robots: &Self::Config,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let mut built = BTreeMap::new();
        let timeout = robots.values().map(|r| r.timeout_secs).max().unwrap_or(10);
        for (name, r) in robots {
            let webhook = match &r.webhook {
                Some(w) => Some(webhook_url(&secrets.resolve(w).await?)),
                None => {
                    warn!(robot = %name, "WeCom robot without a webhook: dry-run, posts are recorded, not sent");
                    None
                }
            };
            let window = RateWindow::per_minute(r.max_per_minute);
            built.insert(
                name.clone(),
                Robot {
                    webhook,
                    window,
                    own: (),
                },
            );
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
fn test_post(_: &Robot<()>) -> Value {
    json!({ "msgtype": "text", "text": {
            "content": "hookbridge check: a test message, nothing to do" } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_errcode() {
        assert_eq!(judge(200, br#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        assert!(matches!(
            judge(
                200,
                br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#
            ),
            Err(Failure::Throttled {
                wait: THROTTLE_WAIT,
                ..
            })
        ));
        let Err(Failure::Permanent(m)) = judge(
            200,
            br#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [1700000000_1_abc], from ip: 1.2.3.4, more info at https://open.work.weixin.qq.com/devtool/query?e=93000"}"#,
        ) else {
            panic!()
        };
        assert!(m.contains("key is wrong") && !m.contains("from ip"), "{m}");
        assert!(matches!(judge(502, b"<html>"), Err(Failure::Transient(_))));
        assert!(matches!(
            judge(200, br#"{"errcode":-1}"#),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            judge(200, br#"{"errcode":40008}"#),
            Err(Failure::Permanent(_))
        ));
    }

    /// `hookbridge setup wecom_robot` says where the webhook comes from, never its value.
    #[cfg(feature = "cli")]
    #[test]
    fn setup_names_each_robot_and_where_its_webhook_is_read() {
        let config: BTreeMap<String, WeComRobotConfig> = toml::from_str(
            "[ops]\nwebhook = \"env:OPS_WECOM\"\n[dev]\nwebhook = \"plain:https://q/send?key=k1\"\n",
        )
        .unwrap();
        let at = crate::tools::Deployment {
            api: "http://h:3000".into(),
            outputs: BTreeMap::new(),
            egress: crate::tools::Egress::Host,
            config_file: "hookbridge.toml".into(),
            reveal: false,
        };
        let said = WeComRobot::setup(Some(&config), &at);
        assert!(
            said.contains("[connectors.wecom_robot.ops] webhook read from env:OPS_WECOM"),
            "{said}"
        );
        assert!(!said.contains("k1"), "{said}");
        assert!(WeComRobot::setup(None, &at).contains("webhook = \"env:…\""));
    }

    #[test]
    fn a_webhook_is_a_url_or_its_key() {
        assert_eq!(webhook_url(" k-1 "), format!("{WEBHOOK}k-1"));
        assert_eq!(
            webhook_url("http://127.0.0.1:9/send?key=k"),
            "http://127.0.0.1:9/send?key=k"
        );
    }
}
