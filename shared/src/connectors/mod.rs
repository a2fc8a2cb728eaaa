//! Outbound connectors, a folder each: `mod.rs` (its config section and the [`Connector`] the
//! sender loop calls), `render.rs` (notices to request bodies: its [`Render`]), `api.rs` (the
//! HTTP calls and their error classes) and `token.rs` where it has tokens. This module owns
//! their contract; the registry (`registry.rs`) plugs them in.

pub mod dingtalk;
pub mod dingtalk_msg;
pub mod dingtalk_robot;
pub mod feishu;
pub mod feishu_robot;
pub mod govding;
pub mod robots;
pub mod token;
pub mod wecom;
pub mod wecom_robot;
pub mod zentao;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::event::{Action, Delivery, Failure, Millis, Outcome};
use crate::notice::Notice;
use crate::preflight::{Check, Scope};
use crate::setup::{ConfigError, Secrets};
use crate::store::{CacheStore, HistoryStore, RateStore, ReceiptStore, TokenStore, UsageStore};

/// Where a route sends, within its connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Which configured instance, for connectors that have several.
    pub instance: Option<String>,
    /// A group chat instead of users.
    pub group: Option<String>,
    /// An audience the connector names itself (DingTalk: departments, the whole organisation)
    /// instead of the users the route maps.
    pub audience: bool,
    /// A group (a robot's) that the route's users are @mentioned in: it is posted to with or
    /// without any.
    pub mentions: bool,
    /// When the source reports a to-do finished, take back what was sent instead of marking
    /// it done.
    pub revoke_on_finish: bool,
    /// The route's options for this connector as it read them ([`Render::route_options`]);
    /// nothing else reads them.
    pub options: Value,
}

impl Target {
    /// Whether it reaches the users the route maps, not a group, an audience or mentions.
    pub fn is_users(&self) -> bool {
        self.group.is_none() && !self.audience && !self.mentions
    }
}

/// A route's options for a connector that takes none.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoRouteOptions {}

/// `options` (a route's keys beyond the shared ones) read as the connector's `T`, or what is
/// wrong with them for `connector`.
pub fn route_options<T: serde::de::DeserializeOwned>(
    connector: &str,
    options: &toml::Table,
) -> Result<T, BadTarget> {
    T::deserialize(toml::Value::Table(options.clone())).map_err(|e| {
        BadTarget(format!(
            "{} (a {connector} route takes source, connector, kinds, instance, group, users, \
                 when, matchers, template and these)",
            e.message()
        ))
    })
}

/// Where a connector counts its calls for `hookbridge status`: one account's (`<connector>#<app>`)
/// answered calls per Beijing month, against a quota when it has one (DingTalk's month).
/// Counted in memory and written by [`flush_calls`], once per account, at the end of a Lambda
/// batch, of an operator's preflight and on `serve`'s sweep tick: a count costs no write per
/// call.
#[derive(Clone)]
pub struct CallCounter {
    usage: Arc<dyn UsageStore>,
    account: String,
    quota: u64,
    on_total: Option<OnTotal>,
}

/// Hears each written count's new total for the month and how many calls it added.
pub type OnTotal = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Calls counted and not yet written, with what to write them against.
struct Pending {
    usage: Arc<dyn UsageStore>,
    calls: u64,
    quota: u64,
    on_total: Option<OnTotal>,
}

/// The calls counted and not yet written, by store (its address: a process may hold several,
/// tests do), account and month.
type PendingCalls = std::collections::BTreeMap<(usize, String, String), Pending>;
static PENDING_CALLS: std::sync::Mutex<PendingCalls> = std::sync::Mutex::new(PendingCalls::new());

impl CallCounter {
    pub fn new(usage: Arc<dyn UsageStore>, account: String) -> Self {
        CallCounter {
            usage,
            account,
            quota: 0,
            on_total: None,
        }
    }

    /// Counted against `quota`, with `on_total` told each new total.
    pub fn with_quota(self, quota: u64, on_total: OnTotal) -> Self {
        CallCounter {
            quota,
            on_total: Some(on_total),
            ..self
        }
    }

    /// Counts one answered call, for the next [`flush_calls`].
    pub fn count(&self) {
        self.count_n(1);
    }

    /// Counts `n` answered calls, for the next [`flush_calls`].
    pub fn count_n(&self, n: u64) {
        let month = crate::event::beijing_month(crate::event::now_ms());
        let mut pending = PENDING_CALLS.lock().unwrap_or_else(|e| e.into_inner());
        let store = Arc::as_ptr(&self.usage).cast::<()>() as usize;
        let entry = pending
            .entry((store, self.account.clone(), month))
            .or_insert_with(|| Pending {
                usage: self.usage.clone(),
                calls: 0,
                quota: self.quota,
                on_total: self.on_total.clone(),
            });
        entry.calls += n;
    }
}

/// Writes the calls counted since the last flush: one `ADD` per account and month. A store
/// failure costs those counts (they are for `hookbridge status` and the quota's warnings),
/// never a delivery.
pub async fn flush_calls() {
    let pending = std::mem::take(&mut *PENDING_CALLS.lock().unwrap_or_else(|e| e.into_inner()));
    for ((_, account, month), p) in pending {
        match p.usage.add_usage(&account, &month, p.calls, p.quota).await {
            Ok(total) => {
                if let Some(on_total) = &p.on_total {
                    on_total(total, p.calls);
                }
            }
            Err(e) => {
                let calls = p.calls;
                tracing::warn!(error = %e, account = %account, calls, "these calls could not be counted");
            }
        }
    }
}

/// What a connector without credentials records instead of calling: the action and its body.
pub fn recorded(d: &Delivery) -> Outcome {
    Outcome::DryRun(
        serde_json::json!({ "requests": [{ "action": d.action.as_str(), "body": d.message }] }),
    )
}

/// A delivery whose action `system` has no call for.
pub fn no_call(system: &str, action: &Action) -> Outcome {
    Outcome::Skipped(format!("{system} makes no `{}` call", action.as_str()))
}

/// The mark of `quota` (80 or 100, per cent) that `added` calls, bringing a period's count to
/// `calls`, crossed; each is crossed once (the store's count is atomic, so one sender in the
/// fleet says it). A quota of 0 is none.
pub fn quota_crossed(calls: u64, added: u64, quota: u64) -> Option<u8> {
    let before = calls.saturating_sub(added);
    let crossed = |mark: u64| quota > 0 && before < mark && calls >= mark;
    if crossed(quota) {
        Some(100)
    } else if crossed((quota * 4).div_ceil(5)) {
        Some(80)
    } else {
        None
    }
}

/// The instance a route names among `names` (a connector's configured ones), or the only one
/// there is; else what to write, calling them `what` ("the robots").
pub fn named_instance<'a>(
    instance: Option<&str>,
    names: impl Iterator<Item = &'a String>,
    what: &str,
) -> Result<String, BadTarget> {
    let names: Vec<&String> = names.collect();
    match (instance, names.as_slice()) {
        (Some(i), _) if names.iter().any(|n| *n == i) => Ok(i.to_owned()),
        (None, [only]) => Ok((*only).clone()),
        _ => Err(BadTarget(format!(
            "instance {:?} is not one of {what} ({}); name one with `instance`",
            instance.unwrap_or(""),
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Why a route's `instance` or `group` does not fit its connector (said to whoever edits the
/// config).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub String);

/// Why a notice could not become a connector's request: the delivery dies with it as the
/// reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl From<serde_json::Error> for RenderError {
    fn from(e: serde_json::Error) -> Self {
        RenderError(format!("the request does not encode: {e}"))
    }
}

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
    /// `target` with the route's options for this connector (its keys beyond the shared ones),
    /// or what is wrong with them. A connector without options takes none.
    fn route_options(&self, options: &toml::Table, target: Target) -> Result<Target, BadTarget> {
        route_options::<NoRouteOptions>(self.name(), options).map(|_| target)
    }
    /// The calls that deliver `notice` to `users` (already mapped; empty for a group).
    fn plan(
        &self,
        notice: &Notice,
        target: &Target,
        users: Vec<String>,
    ) -> Result<Plan, RenderError>;
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
    type Config: crate::setup::Section;
    /// The keys a route for it may add ([`NoRouteOptions`] for none): for the config's schema
    /// and reference; [`Render::route_options`] reads them.
    type RouteOptions: crate::setup::Section;
    /// Where its system can be set to accept calls only from listed addresses (an egress IP
    /// whitelist), if it can: its sender function then runs behind the stack's static egress
    /// (`EgressMode`; tests/tests/egress.rs holds the template to it), and `hookbridge setup`
    /// says what to list there.
    const CALLER_ALLOWLIST: Option<Allowlist>;
    /// How long after a send its system still lets hookbridge act on it, if it limits that,
    /// and why: a config with this connector waits no longer (`delivery.max_wait_secs`) and
    /// keeps what it sent no shorter (`store.retention_days`).
    const WINDOW: Option<(u32, &'static str)> = None;
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
    /// Its own `hookbridge <name> …` command, if it has one.
    #[cfg(feature = "cli")]
    fn tool() -> Option<crate::tools::Tool> {
        None
    }
    /// What to set in its system for this deployment (`hookbridge setup <name>`); its
    /// section, when the config has one. Default: the address to list, where it has a list.
    #[cfg(feature = "cli")]
    fn setup(_config: Option<&Self::Config>, at: &crate::tools::Deployment) -> String {
        Self::CALLER_ALLOWLIST.map_or_else(String::new, |a| at.allowlist(a.system, a.place))
    }
}

/// Where a system lists the addresses it accepts calls from.
#[derive(Debug, Clone, Copy)]
pub struct Allowlist {
    /// The system, as its operators call it.
    pub system: &'static str,
    /// Where in its console the list is, and what it answers a caller not on it.
    pub place: &'static str,
}

/// A connector's per-request timeout when it does not set its own.
fn default_timeout() -> u64 {
    10
}
