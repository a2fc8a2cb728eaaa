//! Outbound connectors, a folder each: `mod.rs` (its config section and the [`Connector`] the
//! sender loop calls), `render.rs` (notices to request bodies: its [`Render`]), `api.rs` (the
//! HTTP calls and their error classes) and `token.rs` where it has tokens. This module owns
//! their contract; the registry (`registry.rs`) plugs them in.

pub mod dingtalk;
pub mod dingtalk_robot;
pub mod govding;
pub mod zentao;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::event::{Action, Delivery, Failure, Millis, Outcome};
use crate::notice::Notice;
use crate::preflight::{Check, Scope};
use crate::setup::{ConfigError, Secrets};
use crate::store::{CacheStore, HistoryStore, RateStore, ReceiptStore, TokenStore, UsageStore};

/// How much a connector asks its system what became of a send, where the system can tell
/// (DingTalk: `connectors.dingtalk.follow_up`, or a route's `follow_up`). Each follow-up call
/// counts against the monthly API quota like a send.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUp {
    /// Trust `errcode 0`: one call per send.
    Off,
    /// One `getsendresult` a delay after the send: who was forbidden, invalid or failed, and
    /// `undelivered` when nobody got it. One more call per send.
    #[default]
    Failures,
    /// `getsendprogress` until DingTalk has finished the send, then `getsendresult`: the same
    /// outcomes, never read before the send is done. At least two more calls per send.
    Full,
}

/// Where a route sends, within its connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Which configured instance, for connectors that have several.
    pub instance: Option<String>,
    /// A group chat instead of users.
    pub group: Option<String>,
    /// The whole organisation (DingTalk `to_all_user`), only when a route says so.
    pub everyone: bool,
    /// These departments (DingTalk `dept_id_list`) instead of users.
    pub departments: Vec<String>,
    /// A group (a robot's) that the route's users are @mentioned in: it is posted to with or
    /// without any.
    pub mentions: bool,
    /// The route's own follow-up, over the connector's.
    pub follow_up: Option<FollowUp>,
}

impl Target {
    /// Whether it reaches the users the route maps, not a group, department or everyone.
    pub fn is_users(&self) -> bool {
        self.group.is_none() && !self.everyone && self.departments.is_empty() && !self.mentions
    }

    /// This target with what a route adds: everyone or `departments` instead of users (for a
    /// connector that [`Render::broadcasts`]), its own follow-up.
    pub fn for_route(
        mut self,
        render: &dyn Render,
        route: RouteTarget,
    ) -> Result<Target, BadTarget> {
        self.follow_up = route.follow_up;
        let RouteTarget {
            everyone,
            departments,
            ..
        } = route;
        match (everyone, departments.is_empty()) {
            (false, true) => Ok(self),
            _ if !render.broadcasts() => Err(BadTarget(format!(
                "{} sends to users: `to_all_user` and `departments` are not for it",
                render.name()
            ))),
            (true, false) => Err(BadTarget(
                "choose `to_all_user` or `departments`, not both".into(),
            )),
            _ => {
                (self.everyone, self.departments) = (everyone, departments);
                Ok(self)
            }
        }
    }
}

/// What a route asks of its connector's target beyond instance and group.
#[derive(Debug, Clone, Default)]
pub struct RouteTarget {
    /// The whole organisation (`to_all_user`).
    pub everyone: bool,
    pub departments: Vec<String>,
    pub follow_up: Option<FollowUp>,
}

/// Why a route's `instance` or `group` does not fit its connector (said to whoever edits the
/// config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub String);

/// One call a connector will make: one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub action: Action,
    /// Who it reaches, as the connector names them (or the group).
    pub recipients: Vec<String>,
    /// The request, fully rendered: the sender posts it as it is.
    pub message: Value,
}

/// What a connector makes of one notice for one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub calls: Vec<Call>,
    /// Users the connector cannot address (reported with those that have no mapping).
    pub unmapped: Vec<String>,
}

/// The ingress half of a connector: a notice in, request bodies out. Pure and built from config
/// alone, so a webhook function renders without any of the connector's secrets, and the same
/// notice always renders the same bytes (a retried send is an exact resend).
pub trait Render: Send + Sync {
    fn name(&self) -> &'static str;
    /// The target of a route with these `instance` and `group` settings, or what is wrong with
    /// them for this connector.
    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget>;
    /// Whether `notice` shows as Markdown on `target` (then templates escape the event's values).
    fn markdown(&self, notice: &Notice, target: &Target) -> bool;
    /// The calls that deliver `notice` to `users` (already mapped; empty for a group).
    fn plan(
        &self,
        notice: &Notice,
        target: &Target,
        users: Vec<String>,
    ) -> Result<Plan, serde_json::Error>;
    /// Whether routes may send to the whole organisation or to departments.
    fn broadcasts(&self) -> bool {
        false
    }
    /// What this connector's recipients are called, in the report of those without a mapping.
    fn recipient_noun(&self) -> &'static str {
        "recipient"
    }
}

/// The sending half of a connector, which the sender loop ([`crate::delivery`]) calls.
#[async_trait]
pub trait Connector: Send + Sync {
    fn name(&self) -> &'static str;
    /// Makes the call for one claimed delivery. Never panics, never retries in place beyond
    /// what the protocol itself asks for (a token refresh): retries are the loop's job.
    async fn deliver(&self, delivery: &Delivery) -> Outcome;
    /// Whether it records requests instead of sending them (it has no credentials).
    fn dry_run(&self) -> bool;
    /// Takes a sent message back (an operator's `hookbridge deliveries recall`). What the
    /// system answered, or why it cannot be done; a refusal known in advance (a window passed)
    /// makes no call.
    async fn recall(&self, delivery: &Delivery, _now: Millis) -> Result<Value, Failure> {
        Err(Failure::Permanent(format!(
            "{} has no API to take back a sent message (delivery {})",
            self.name(),
            delivery.key()
        )))
    }
    /// Read-only questions to its system before going live (`hookbridge check --online`), a
    /// line each: whether the credentials, ids and addresses in the config work there.
    async fn preflight(&self, _scope: &Scope) -> Vec<Check> {
        vec![Check::note(
            self.name(),
            "nothing to ask its system before going live",
        )]
    }
}

/// The store a connector may use: only these narrow ports, never the delivery store.
#[derive(Clone)]
pub struct Ports {
    pub tokens: Arc<dyn TokenStore>,
    pub history: Arc<dyn HistoryStore>,
    pub receipts: Arc<dyn ReceiptStore>,
    pub cache: Arc<dyn CacheStore>,
    pub usage: Arc<dyn UsageStore>,
    pub rates: Arc<dyn RateStore>,
}

/// How the registry (`registry.rs`) makes a connector from its `[connectors.<name>]` section.
#[async_trait]
pub trait ConnectorPart {
    type Config: crate::config::Section;
    /// Whether its system can be set to accept calls only from listed addresses (an egress IP
    /// whitelist): its sender function then runs behind the stack's static egress
    /// (`EgressMode`; tests/tests/egress.rs holds the template to it).
    const CALLER_ALLOWLIST: bool;
    /// What is wrong with the section beyond its types, before any secret is resolved.
    fn check(_config: &Self::Config) -> Result<(), ConfigError> {
        Ok(())
    }
    /// The ingress half, from the section alone (no secrets).
    fn render(config: &Self::Config) -> Arc<dyn Render>;
    /// The sending half, with its secrets resolved (and no other part's).
    async fn build(
        config: &Self::Config,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError>;
}

/// A connector's per-request timeout when it does not set its own.
fn default_timeout() -> u64 {
    10
}
