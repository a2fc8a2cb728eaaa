//! What the group-robot connectors share (`dingtalk_robot/`, `wecom_robot/`, a folder each):
//! robots by name, each a webhook (none: dry-run) and a window of messages a minute; a delivery
//! is one post to one robot, judged by the connector's own reading of the answer; and only a
//! post tells whether a robot works, so `check --online` posts only when asked to.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use std::time::Duration;

use async_trait::async_trait;

use super::{BadTarget, Call, CallCounter, Connector, Plan, RenderError, Target, named_instance};
use crate::event::{Action, Delivery, Failure, Millis, Outcome};
use crate::notice::{Intent, Notice};
use crate::pacer::RateWindow;
use crate::preflight::{Check, Scope};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::UsageStore;

/// What is wrong with a robot section beyond its types: no robot at all, or a secret without a
/// webhook. `robots` gives each robot's name and whether it has a webhook and a secret.
pub fn check<'a>(
    connector: &str,
    robots: impl ExactSizeIterator<Item = (&'a String, bool, bool)>,
) -> Result<(), ConfigError> {
    if robots.len() == 0 {
        return Err(ConfigError::Invalid(format!(
            "connectors.{connector}: add a robot, [connectors.{connector}.<name>]"
        )));
    }
    for (name, webhook, secret) in robots {
        if secret && !webhook {
            return Err(ConfigError::Invalid(format!(
                "connectors.{connector}.{name}: a secret without a webhook"
            )));
        }
    }
    Ok(())
}

/// A secret reference's value, when there is one.
pub async fn resolve(
    secrets: &Secrets,
    r: &Option<SecretRef>,
) -> Result<Option<String>, ConfigError> {
    match r {
        Some(r) => secrets.resolve(r).await.map(Some),
        None => Ok(None),
    }
}

/// `n` as a robot posts it, if it posts it at all (a finished to-do changes nothing in a
/// group): with the robot's `keyword` in front of a title when neither title nor text has it.
pub fn postable(n: &Notice, keyword: Option<&str>) -> Option<Notice> {
    if !matches!(n.intent, Intent::Message | Intent::Todo { .. }) {
        return None;
    }
    let mut n = n.clone();
    if let Some(k) = keyword
        && !n.title.contains(k)
        && !n.text.contains(k)
    {
        n.title = format!("【{k}】{}", n.title);
    }
    Some(n)
}

/// One post: to which robot, and the body as it goes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobotPost {
    pub robot: String,
    pub body: Value,
}

/// A robot's route target: the robot the route names (or the only one), its users @mentioned.
pub fn target<'a>(
    instance: Option<&str>,
    group: Option<&str>,
    names: impl Iterator<Item = &'a String>,
    what: &str,
) -> Result<Target, BadTarget> {
    if group.is_some() {
        return Err(BadTarget(
            "robot routes take no `group`: a robot posts to its own group; name it with `instance`"
                .into(),
        ));
    }
    Ok(Target {
        instance: Some(named_instance(instance, names, what)?),
        mentions: true,
        ..Target::default()
    })
}

/// The one post of a notice: `body` to `robot`, mentioning `mentions` (its recipients; the
/// robot itself when nobody is mentioned); `unmapped` those it could not mention.
pub fn plan(
    robot: String,
    body: Value,
    mentions: Vec<String>,
    unmapped: Vec<String>,
) -> Result<Plan, RenderError> {
    let recipients = if mentions.is_empty() {
        vec![format!("robot:{robot}")]
    } else {
        mentions
    };
    let call = Call {
        action: Action::Send,
        recipients,
        message: serde_json::to_value(RobotPost { robot, body })?,
    };
    Ok(Plan {
        calls: vec![call],
        unmapped,
    })
}

/// `s` in at most `max` bytes, cut at a character and ending in "…" when cut: robots refuse
/// a body past their limits.
pub fn fit(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A configured robot: where it posts (`None`: dry-run), its window, and what its connector
/// keeps besides (`own`: a signing secret, a keyword).
pub struct Robot<R> {
    pub webhook: Option<String>,
    pub window: RateWindow,
    pub own: R,
}

/// How a connector reads a robot's answer: `Ok` when posted.
pub type Judge = fn(status: u16, body: &[u8]) -> Result<(), Failure>;

/// A connector's robots and how it posts to them.
pub struct Robots<R> {
    /// `[connectors.<connector>.<name>]`.
    pub connector: &'static str,
    pub http: reqwest::Client,
    pub robots: BTreeMap<String, Robot<R>>,
    pub judge: Judge,
    pub request: Request<R>,
    /// The test message `hookbridge check --send-test` posts to a robot.
    pub test: fn(&Robot<R>) -> Value,
    /// Where each robot's posts are counted (`<connector>#<robot>`), for `hookbridge status`.
    pub usage: Arc<dyn UsageStore>,
}

/// The URL and body a post goes out as, from the robot, its webhook and the stored body: where
/// a robot signs (DingTalk in the URL, Feishu in the body), with the time of sending.
pub type Request<R> = fn(&Robot<R>, &str, &Value) -> (String, Value);

impl<R: Send + Sync> Robots<R> {
    /// `connector`'s robots, each post taking at most `timeout_secs`.
    pub fn new(
        connector: &'static str,
        robots: BTreeMap<String, Robot<R>>,
        timeout_secs: u64,
        judge: Judge,
        request: Request<R>,
        test: fn(&Robot<R>) -> Value,
        usage: Arc<dyn UsageStore>,
    ) -> Result<Self, ConfigError> {
        let http = crate::http::client(Duration::from_secs(timeout_secs)).map_err(|e| {
            ConfigError::Invalid(format!("connectors.{connector}: HTTP client: {e}"))
        })?;
        Ok(Robots {
            connector,
            http,
            robots,
            judge,
            request,
            test,
            usage,
        })
    }

    /// Posts `body` to robot `name` if its window has room; the answer judged.
    async fn post(&self, name: &str, robot: &Robot<R>, webhook: &str, body: &Value) -> Outcome {
        if let Err(wait) = robot.window.take() {
            return Outcome::Failed(Failure::Throttled {
                reason: format!("robot {name} has posted its messages for this minute or second"),
                wait: Millis::try_from(wait.as_millis()).unwrap_or(Millis::MAX),
            });
        }
        let (url, body) = (self.request)(robot, webhook, body);
        // The URL carries the robot's secret: errors are reported without it.
        let response = match self.http.post(url).json(&body).send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(Failure::Transient(e.without_url().to_string())),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => match (self.judge)(status, &bytes) {
                Ok(()) => {
                    let account = format!("{}#{name}", self.connector);
                    CallCounter::new(self.usage.clone(), account).count();
                    Outcome::Sent(json!({ "robot": name }))
                }
                Err(f) => Outcome::Failed(f),
            },
            Err(e) => Outcome::Failed(Failure::Transient(e.without_url().to_string())),
        }
    }
}

#[async_trait]
impl<R: Send + Sync + 'static> Connector for Robots<R> {
    fn name(&self) -> &'static str {
        self.connector
    }

    /// A robot has no read-only API: only a real post tells whether its webhook, secret,
    /// keyword and IP rules work, so each posts its test message only when asked to.
    async fn preflight(&self, scope: &Scope) -> Vec<Check> {
        let mut out = vec![];
        for (name, robot) in &self.robots {
            let part = format!("{} {name}", self.connector);
            out.push(match (&robot.webhook, scope.send_test) {
                (None, _) => Check::note(&part, "dry-run (no webhook): nothing is posted"),
                (Some(_), false) => Check::note(
                    &part,
                    "not asked: a robot can only be tried by posting (--send-test posts a test message)",
                ),
                (Some(webhook), true) => {
                    match self.post(name, robot, webhook, &(self.test)(robot)).await {
                        Outcome::Sent(_) => Check::pass(&part, "the test message was posted"),
                        Outcome::Failed(f) => Check::fail(&part, format!("{f}")),
                        other => Check::fail(&part, format!("{other:?}")),
                    }
                }
            });
        }
        out
    }

    fn dry_run(&self) -> bool {
        self.robots.values().all(|r| r.webhook.is_none())
    }

    /// One delivery: its post to its robot (recorded, not sent, when the robot is dry-run).
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
                "no robot {:?} is configured here ([connectors.{}.{}])",
                post.robot, self.connector, post.robot
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
