//! DingTalk group robots (自定义机器人): `POST /robot/send?access_token=…`, signed with 加签
//! when the robot has a secret, 20 messages a minute per robot. `render.rs` has the bodies,
//! `api.rs` the signing and the error classes; this file is the config and the connector the
//! sender loop calls (posting as every group robot does, `connectors/robots.rs`).
//!
//! The window is per process: on AWS the robot sender runs as one instance at a time
//! (reserved concurrency 1 in `template.yaml`), so it is the robot's window fleet-wide.

mod api;
mod render;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

pub use api::{THROTTLE_WAIT, judge, sign, signed_url};
pub use render::*;

use super::robots::{self, Robot, Robots};
use super::{Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::now_ms;
use crate::pacer::RateWindow;
use crate::setup::{ConfigError, SecretRef, Secrets};

pub const CONNECTOR: &str = "dingtalk_robot";

// ---- config: [connectors.dingtalk_robot.<name>] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    /// The robot's webhook URL with its `access_token`, a secret reference (whoever has it can
    /// post to the group). Absent: dry-run.
    pub webhook: Option<SecretRef>,
    /// The 加签 secret (`SEC…`), a secret reference, when the robot's security setting is 加签.
    pub secret: Option<SecretRef>,
    /// The robot's keyword, when its security setting is 自定义关键词: a message that does not
    /// contain it gets it in front of its title.
    pub keyword: Option<String>,
    /// Messages a minute at most (DingTalk holds a robot for 10 minutes beyond 20).
    #[serde(default = "default_per_minute")]
    pub max_per_minute: u32,
    /// Seconds each post may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_per_minute() -> u32 {
    20
}

// ---- the connector ----

/// What a DingTalk robot keeps besides its webhook.
pub struct Security {
    /// The 加签 secret.
    secret: Option<String>,
    /// For the test message of `hookbridge check --online --send-test`.
    keyword: Option<String>,
}

/// The part the registry builds: its robots, as one [`Robots`] connector.
pub struct DingTalkRobot;

/// The webhook with `timestamp` and `sign` when the robot has a 加签 secret.
fn request(robot: &Robot<Security>, webhook: &str, body: &Value) -> (String, Value) {
    let url = signed_url(webhook, robot.own.secret.as_deref(), now_ms());
    (url, body.clone())
}

#[async_trait]
impl ConnectorPart for DingTalkRobot {
    type Config = BTreeMap<String, RobotConfig>;
    type RouteOptions = super::NoRouteOptions;
    /// A robot's security settings may be an IP range instead of a keyword or 加签.
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "A DingTalk group robot",
        place: "its 安全设置 when that is IP地址（段） (the group → 群设置 → 机器人 → the robot); a robot secured by \
            keyword or 加签 needs nothing here",
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
                window: RateWindow::per_minute(r.max_per_minute),
                own: Security {
                    secret: resolve(&r.secret).await?,
                    keyword: r.keyword.clone(),
                },
            };
            if robot.webhook.is_none() {
                warn!(robot = %name, "DingTalk robot without a webhook: dry-run, posts are recorded, not sent");
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
fn test_post(robot: &Robot<Security>) -> Value {
    let keyword = robot.own.keyword.as_deref();
    let text = format!(
        "{}hookbridge check: a test message, nothing to do",
        keyword.map_or(String::new(), |k| format!("{k} "))
    );
    json!({ "msgtype": "text", "text": { "content": text } })
}
