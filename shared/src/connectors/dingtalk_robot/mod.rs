//! DingTalk group robots (自定义机器人): `POST /robot/send?access_token=…`, signed with 加签
//! when the robot has a secret, 20 messages a minute per robot. `render.rs` has the bodies,
//! `api.rs` the signing, the error classes and the minute window; this file is the config and
//! the connector the sender loop calls.
//!
//! The window is per process: on AWS the robot sender runs as one instance at a time
//! (reserved concurrency 1 in `template.yaml`), so it is the robot's window fleet-wide.

mod api;
mod render;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

pub use api::{THROTTLE_WAIT, judge, sign, signed_url};
pub use render::*;

use super::{Connector, ConnectorPart, Ports, Render, default_timeout};
use crate::event::{Action, Delivery, Failure, Outcome, now_ms};
use crate::pacer::MinuteWindow;
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

struct Robot {
    /// `None`: dry-run.
    webhook: Option<String>,
    secret: Option<String>,
    /// For the test message of `hookbridge check --online --send-test`.
    keyword: Option<String>,
    window: MinuteWindow,
}

pub struct DingTalkRobot {
    http: reqwest::Client,
    robots: BTreeMap<String, Robot>,
}

impl DingTalkRobot {
    async fn post(
        &self,
        name: &str,
        robot: &Robot,
        webhook: &str,
        body: &serde_json::Value,
    ) -> Outcome {
        if let Err(wait) = robot.window.take() {
            return Outcome::Failed(Failure::Throttled {
                reason: format!("robot {name} has posted its messages for this minute"),
                wait: i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
            });
        }
        let url = signed_url(webhook, robot.secret.as_deref(), now_ms());
        // The URL carries the robot's token: errors are reported without it.
        let answer = self.http.post(url).json(body).send().await;
        let response = match answer {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(Failure::Transient(e.without_url().to_string())),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => match judge(status, &bytes) {
                Ok(()) => Outcome::Sent(json!({ "robot": name })),
                Err(f) => Outcome::Failed(f),
            },
            Err(e) => Outcome::Failed(Failure::Transient(e.without_url().to_string())),
        }
    }
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
        if robots.is_empty() {
            return Err(ConfigError::Invalid(
                "connectors.dingtalk_robot: add a robot, [connectors.dingtalk_robot.<name>]".into(),
            ));
        }
        for (name, r) in robots {
            if r.secret.is_some() && r.webhook.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "connectors.dingtalk_robot.{name}: a secret without a webhook"
                )));
            }
        }
        Ok(())
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
        _: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let mut built = BTreeMap::new();
        let timeout = robots.values().map(|r| r.timeout_secs).max().unwrap_or(10);
        for (name, r) in robots {
            let resolve = async |s: &Option<SecretRef>| match s {
                Some(s) => secrets.resolve(s).await.map(Some),
                None => Ok(None),
            };
            let robot = Robot {
                webhook: resolve(&r.webhook).await?,
                secret: resolve(&r.secret).await?,
                keyword: r.keyword.clone(),
                window: MinuteWindow::new(r.max_per_minute),
            };
            if robot.webhook.is_none() {
                warn!(robot = %name, "DingTalk robot without a webhook: dry-run, posts are recorded, not sent");
            }
            built.insert(name.clone(), robot);
        }
        let http = crate::http::client(Duration::from_secs(timeout)).map_err(|e| {
            ConfigError::Invalid(format!("connectors.dingtalk_robot: HTTP client: {e}"))
        })?;
        Ok(Arc::new(DingTalkRobot {
            http,
            robots: built,
        }))
    }
}

#[async_trait]
impl Connector for DingTalkRobot {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    /// A robot has no read-only API: only a real post tells whether its token, 加签 or keyword
    /// and IP range work, so it posts a test message only when asked to.
    async fn preflight(&self, scope: &crate::preflight::Scope) -> Vec<crate::preflight::Check> {
        use crate::preflight::Check;
        let mut out = vec![];
        for (name, robot) in &self.robots {
            let part = format!("{CONNECTOR} {name}");
            let Some(webhook) = &robot.webhook else {
                out.push(Check::note(
                    &part,
                    "dry-run (no webhook): nothing is posted",
                ));
                continue;
            };
            if !scope.send_test {
                out.push(Check::note(
                    &part,
                    "not asked: a robot can only be tried by posting (--send-test posts a test message)",
                ));
                continue;
            }
            let text = format!(
                "{}hookbridge check: a test message, nothing to do",
                robot
                    .keyword
                    .as_deref()
                    .map_or(String::new(), |k| format!("{k} "))
            );
            let body = json!({ "msgtype": "text", "text": { "content": text } });
            out.push(match self.post(name, robot, webhook, &body).await {
                Outcome::Sent(_) => Check::pass(&part, "the test message was posted"),
                Outcome::Failed(f) => Check::fail(&part, format!("{f}")),
                other => Check::fail(&part, format!("{other:?}")),
            });
        }
        out
    }

    fn dry_run(&self) -> bool {
        self.robots.values().all(|r| r.webhook.is_none())
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        if d.action != Action::Send {
            return Outcome::Skipped("a robot only posts messages".into());
        }
        let post: RobotPost = match serde_json::from_value(d.message.clone()) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(Failure::Permanent(format!("bad robot post: {e}"))),
        };
        let Some(robot) = self.robots.get(&post.robot) else {
            return Outcome::Failed(Failure::Permanent(format!(
                "no robot {:?} is configured here ([connectors.dingtalk_robot.{}])",
                post.robot, post.robot
            )));
        };
        match &robot.webhook {
            None => {
                Outcome::DryRun(json!({ "requests": [{ "robot": post.robot, "body": post.body }] }))
            }
            Some(webhook) => self.post(&post.robot, robot, webhook, &post.body).await,
        }
    }
}
