//! DingTalk work notifications (工作通知) through the classic `oapi.dingtalk.com` API:
//! `gettoken`, `asyncsend_v2`, `status_bar/update` (open.dingtalk.com, 工作通知).
//!
//! DingTalk answers HTTP 200 on failure: success is `errcode == 0`, `errcode 88` carries the
//! real code in `sub_code`, and an IP ban answers with HTML. Every answer goes through
//! [`judge`], which maps the protocol's codes to the three error classes.

mod api;
mod follow_up;
mod preflight;
mod render;
mod token;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, warn};

pub use api::{ApiError, RECALL_PATH, SEND_PATH, STATUS_BAR_PATH, TOKEN_PATH, judge};
pub use follow_up::{FollowUp, PROGRESS_PATH, RESULT_PATH, forbidden_reason};
pub use render::*;
pub use token::DingTalkTokens;

use super::dingtalk_msg::NoticeFormat;
use super::{CallCounter, Connector, ConnectorPart, OnTotal, Ports, Render, default_timeout};
use crate::event::{Action, Delivery, Failure, Millis, Outcome, Status, now_ms};
use crate::metrics;
use crate::pacer::Fleet;
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::store::HistoryStore;
use api::{Api, as_code};

pub const CONNECTOR: &str = "dingtalk";

/// The share of the month's API quota used, per app; the stack's DingTalkQuotaAlarm watches it.
pub const QUOTA_USED: metrics::Metric = metrics::Metric::percent(
    "DingTalkQuotaUsedPercent",
    "hookbridge_dingtalk_quota_used_percent",
    true,
    "Share of the month's DingTalk API quota used (by app).",
);

// ---- config: [connectors.dingtalk] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// The app's AgentId (its detail page in the developer console).
    pub agent_id: i64,
    /// AppKey and AppSecret of the internal app. Both absent: dry-run (render and record only).
    pub app_key: Option<String>,
    pub app_secret: Option<SecretRef>,
    /// The API host: `https://oapi.dingtalk.com`.
    #[serde(default = "default_dingtalk_url")]
    pub base_url: String,
    /// `per_user`: one OA card per to-do recipient, so each card turns done when that person
    /// finishes. `chunk5`: up to 5 recipients share a card (fewer API calls; the card turns done
    /// for all of them when any one finishes).
    #[serde(default)]
    pub todo_fanout: TodoFanout,
    /// Calls per second per API for this app at most (DingTalk allows 20 on the standard
    /// edition). The pace slows by itself when DingTalk answers that it is too fast.
    #[serde(default = "default_qps")]
    pub max_qps: u32,
    /// How many `dingtalk-sender` instances may call DingTalk at once. 1 (the stack runs the
    /// function one at a time, and `serve` is one process): the process keeps `max_qps` in a
    /// window of its own. More: each call also takes a place in a window counted in the
    /// table, one small write a call, so that together they keep to it.
    #[serde(default = "default_senders")]
    pub senders: u32,
    /// Seconds each call to DingTalk may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Where an OA card links when the source gave no URL.
    pub default_url: Option<String>,
    /// How messages that are not to-dos read: `markdown` (headings, images, a link) or `text`.
    #[serde(default)]
    pub notice_format: NoticeFormat,
    /// API calls a month the organisation may make (standard edition: 5 000, for all its apps
    /// together). Calls are counted per app and month, a send with its follow-up's
    /// `getsendresult`, and written once per batch; the log warns at 80 % and at 100 %. 0:
    /// count without warning.
    #[serde(default = "default_monthly_quota")]
    pub monthly_quota: u64,
    /// After a send, ask DingTalk what became of it: `off`, `failures` (one `getsendresult`)
    /// or `full` (`getsendprogress` until done, then `getsendresult`). Switched off by itself
    /// from 80 % of `monthly_quota` on, so that sends keep the calls that remain.
    #[serde(default)]
    pub follow_up: FollowUp,
    /// How long after a send the follow-up asks (DingTalk needs a moment to finish a send). On
    /// AWS no sooner than the send's claim lapses (`delivery.claim_lease_secs`): the delivery
    /// waits under its claim's index entry, one write instead of three.
    #[serde(default = "default_follow_up_delay")]
    pub follow_up_delay_secs: u32,
}

/// What a DingTalk route may add to the shared route keys.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkRoute {
    /// Send to everyone in the organisation (`to_all_user`) instead of users: only ever when a
    /// route says so.
    #[serde(default)]
    pub to_all_user: bool,
    /// Send to these departments (DingTalk department ids, sub-departments included) instead
    /// of users.
    #[serde(default)]
    pub departments: Vec<String>,
    /// When the source reports a to-do finished, recall what was sent (within 24 h) instead of
    /// marking it done: for to-dos sent without a status bar.
    #[serde(default)]
    pub recall_on_finish: bool,
    /// How this route's sends are followed up (`off`, `failures`, `full`); default:
    /// `connectors.dingtalk.follow_up`.
    pub follow_up: Option<FollowUp>,
}

fn default_senders() -> u32 {
    1
}

fn default_follow_up_delay() -> u32 {
    60
}

fn default_monthly_quota() -> u64 {
    5_000
}

fn default_dingtalk_url() -> String {
    "https://oapi.dingtalk.com".into()
}

fn default_qps() -> u32 {
    20
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TodoFanout {
    #[default]
    PerUser,
    Chunk5,
}

// ---- the connector ----

enum Mode {
    Live {
        api: Box<Api>,
        tokens: DingTalkTokens,
    },
    /// No credentials: render every request and record it without calling DingTalk.
    DryRun,
}

pub struct DingTalk {
    agent_id: i64,
    mode: Mode,
    /// Where the cards of a to-do are found when its status bar changes.
    history: Arc<dyn HistoryStore>,
    /// Where calls are counted against the monthly quota, as `dingtalk#<app_key>`.
    calls: CallCounter,
    usage_name: String,
    monthly_quota: u64,
    /// The month's count as this process last wrote it, so that follow-ups stop near the quota
    /// without a read of the store per send.
    seen_usage: Arc<AtomicU64>,
    follow_up: FollowUp,
    follow_up_delay: Millis,
}

impl DingTalk {
    /// A live connector when `app_secret` is given, a dry-run one otherwise.
    pub fn new(
        config: &DingTalkConfig,
        app_secret: Option<String>,
        ports: &Ports,
    ) -> Result<Self, reqwest::Error> {
        let mode = match (&config.app_key, app_secret) {
            (Some(key), Some(secret)) => {
                let http = crate::http::client(Duration::from_secs(config.timeout_secs))?;
                let fleet = Fleet::new(
                    config.senders,
                    ports.rates.clone(),
                    format!("{CONNECTOR}#{key}"),
                    config.max_qps,
                );
                Mode::Live {
                    api: Box::new(Api::new(http, &config.base_url, config.max_qps, fleet)),
                    tokens: DingTalkTokens::new(key.clone(), secret, ports.tokens.clone()),
                }
            }
            _ => Mode::DryRun,
        };
        let usage_name = format!("{CONNECTOR}#{}", config.app_key.as_deref().unwrap_or(""));
        let seen_usage = Arc::new(AtomicU64::new(0));
        let quota = config.monthly_quota;
        let on_total: OnTotal = {
            let (seen, app) = (seen_usage.clone(), usage_name.clone());
            Arc::new(move |total, added| quota_total(&seen, &app, quota, total, added))
        };
        Ok(DingTalk {
            agent_id: config.agent_id,
            mode,
            history: ports.history.clone(),
            calls: CallCounter::new(ports.usage.clone(), usage_name.clone())
                .with_quota(quota, on_total),
            usage_name,
            monthly_quota: quota,
            seen_usage,
            follow_up: config.follow_up,
            follow_up_delay: Millis::from(config.follow_up_delay_secs) * 1000,
        })
    }

    /// Counts `calls` answered without error (failed calls are not counted against the quota),
    /// written with the others at the end of the batch ([`super::flush_calls`]): one write a
    /// batch, which then warns at 80 % and 100 % ([`quota_total`]).
    fn count(&self, calls: u64) {
        self.calls.count_n(calls);
        metrics::record(
            &metrics::API_CALLS,
            &[("App", self.usage_name.as_str())],
            calls as f64,
        );
    }

    /// Calls an API with the shared token; on a token error, refreshes once and retries at once.
    async fn call(&self, path: &'static str, body: &Value) -> Result<Value, Failure> {
        self.call_counting(path, body, 1).await
    }

    /// [`DingTalk::call`], counting `calls` against the quota when it is answered: a send
    /// counts the `getsendresult` of its follow-up with it (one write to the count, not two).
    async fn call_counting(
        &self,
        path: &'static str,
        body: &Value,
        calls: u64,
    ) -> Result<Value, Failure> {
        let Mode::Live { api, tokens } = &self.mode else {
            unreachable!("dry-run never calls DingTalk");
        };
        let answer = tokens.call(api, path, body).await;
        if answer.is_ok() && calls > 0 {
            self.count(calls);
        }
        answer
    }

    /// The follow-up in force for `d`: its route's or the configured one, and `off` from 80 %
    /// of the monthly quota on.
    fn follow_up(&self, d: &Delivery) -> FollowUp {
        let quota = self.monthly_quota;
        let near = quota > 0 && self.seen_usage.load(Ordering::Relaxed) >= (quota * 4).div_ceil(5);
        if near {
            FollowUp::Off
        } else {
            self.configured_follow_up(d)
        }
    }

    /// The follow-up `d`'s route or the config asks for, whatever the quota.
    fn configured_follow_up(&self, d: &Delivery) -> FollowUp {
        serde_json::from_value(d.message[FOLLOW_UP_KEY].clone()).unwrap_or(self.follow_up)
    }

    async fn send(&self, d: &Delivery) -> Outcome {
        if d.was_sent() {
            return self.check(d).await;
        }
        let mut body = d.message.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove(FOLLOW_UP_KEY);
        }
        if self.dry_run() {
            return Outcome::DryRun(json!({ "requests": [{ "path": SEND_PATH, "body": body }] }));
        }
        let follow_up = self.follow_up(d);
        let calls = 1 + u64::from(follow_up != FollowUp::Off);
        match self.call_counting(SEND_PATH, &body, calls).await {
            Ok(v) => match v.get("task_id").and_then(as_code) {
                Some(task_id) => {
                    let result = json!({ "task_id": task_id });
                    match follow_up {
                        FollowUp::Off => Outcome::Sent(result),
                        _ => Outcome::Check {
                            result,
                            after: self.follow_up_delay,
                        },
                    }
                }
                None => Outcome::Failed(Failure::Permanent(format!(
                    "DingTalk accepted the send but returned no task_id: {v}"
                ))),
            },
            Err(f) => Outcome::Failed(f),
        }
    }

    /// A claim of a sent delivery: asks DingTalk how the send went ([`follow_up`]). `full`
    /// polls progress (backing off) until the send is done, then reads the result once.
    async fn check(&self, d: &Delivery) -> Outcome {
        let mut result = d.result.clone().unwrap_or_default();
        let Some(task_id) = result.get("task_id").and_then(as_code) else {
            return Outcome::Sent(result);
        };
        if self.configured_follow_up(d) == FollowUp::Off
            || now_ms() - d.created_at > follow_up::CHECK_WINDOW
        {
            result["not_checked"] = json!("follow-ups are off or the send is older than a day");
            return Outcome::Sent(result);
        }
        // Near the quota only the progress polls stop: the result's call was counted with
        // the send, and is made.
        let mode = self.follow_up(d);
        let body = json!({ "agent_id": self.agent_id, "task_id": task_id });
        let polls = result["progress_polls"].as_u64().unwrap_or(0);
        if mode == FollowUp::Full && !follow_up::finished(&result["progress"]) {
            match self.call(PROGRESS_PATH, &body).await {
                Ok(v) => {
                    result["progress"] = v["progress"].clone();
                    result["progress_polls"] = json!(polls + 1);
                    if !follow_up::finished(&v["progress"])
                        && polls + 1 < follow_up::MAX_PROGRESS_POLLS
                    {
                        return Outcome::Check {
                            result,
                            after: self.follow_up_delay << (polls + 1),
                        };
                    }
                }
                Err(f) => return self.check_failed(result, f),
            }
        }
        // Counted with the send.
        match self.call_counting(RESULT_PATH, &body, 0).await {
            Ok(v) => {
                let verdict = follow_up::verdict(result, &v["send_result"], &d.recipients);
                if let Outcome::Undelivered { reason, .. } = &verdict {
                    warn!(task_id, reason = %reason, "DingTalk dropped a work notification");
                }
                verdict
            }
            Err(f) => self.check_failed(result, f),
        }
    }

    /// A follow-up call that failed: tried again later if that can help, else the send stands
    /// as sent, with the reason it could not be checked.
    fn check_failed(&self, mut result: Value, f: Failure) -> Outcome {
        let failures = result["check_failures"].as_u64().unwrap_or(0) + 1;
        result["check_failures"] = json!(failures);
        if !matches!(f, Failure::Permanent(_)) && failures < follow_up::MAX_CHECK_FAILURES {
            return Outcome::Check {
                result,
                after: self.follow_up_delay,
            };
        }
        warn!(error = %f, "could not ask DingTalk how a send went; it stays sent");
        result["not_checked"] = json!(f.to_string());
        Outcome::Sent(result)
    }

    /// Flips the status bar of the cards an earlier send created. Waits while any of them is
    /// still being sent.
    async fn update_status(&self, d: &Delivery) -> Outcome {
        let update: StatusUpdate = match serde_json::from_value(d.message.clone()) {
            Ok(u) => u,
            Err(e) => {
                return Outcome::Failed(Failure::Permanent(format!("bad status update: {e}")));
            }
        };
        let cards: Vec<Delivery> = match self.history.deliveries_of(&update.event).await {
            Ok(all) => all
                .into_iter()
                .filter(|c| c.connector == CONNECTOR && c.action == Action::Send)
                .filter(|c| {
                    serde_json::from_value::<AsyncSend>(c.message.clone())
                        .is_ok_and(|s| s.msg.has_status_bar())
                })
                .collect(),
            Err(e) => return Outcome::Failed(Failure::Transient(e.to_string())),
        };
        if cards.is_empty() {
            return Outcome::Skipped(format!(
                "no DingTalk to-do card was sent for {} (unknown messageId, not a to-do, or expired)",
                update.event
            ));
        }
        let mine: Vec<&Delivery> = match &update.user {
            Some(u) if cards.iter().any(|c| c.recipients.contains(u)) => {
                cards.iter().filter(|c| c.recipients.contains(u)).collect()
            }
            _ => cards.iter().collect(),
        };
        if let Some(c) = mine.iter().find(|c| !c.status.is_final() && !c.was_sent()) {
            return Outcome::Wait(format!(
                "card {} is {} ; the status bar can change once it is sent",
                c.sk,
                c.status.as_str()
            ));
        }
        let done: Vec<(&Delivery, Option<i64>)> = mine
            .iter()
            .filter(|c| c.was_sent() && c.status != Status::Undelivered)
            .map(|c| {
                (
                    *c,
                    c.result
                        .as_ref()
                        .and_then(|r| r.get("task_id"))
                        .and_then(as_code),
                )
            })
            .collect();
        if done.is_empty() {
            return Outcome::Skipped("every card of this to-do failed to send".into());
        }
        // DingTalk changes a status bar within 7 days of the send only: older cards are left
        // as they are, without a call that could only fail.
        let now = now_ms();
        let (done, too_old): (Vec<_>, Vec<_>) = done
            .into_iter()
            .partition(|(card, _)| now - card.updated_at <= STATUS_BAR_WINDOW);
        let too_old: Vec<Option<i64>> = too_old.into_iter().map(|(_, t)| t).collect();
        if done.is_empty() {
            return Outcome::Failed(Failure::Permanent(format!(
                "the card (task {}) was sent more than 7 days ago: DingTalk changes status bars within 7 days of the send only",
                too_old
                    .iter()
                    .map(|t| t.map_or("-".into(), |t| t.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let body = |task_id: Option<i64>| {
            json!({
                "agent_id": self.agent_id,
                "task_id": task_id,
                "status_value": update.status_value,
                "status_bg": update.status_bg,
            })
        };
        if self.dry_run() {
            let requests: Vec<Value> = done
                .iter()
                .map(|(_, t)| json!({ "path": STATUS_BAR_PATH, "body": body(*t) }))
                .collect();
            return Outcome::DryRun(json!({ "requests": requests }));
        }
        let mut updated = vec![];
        for (card, task_id) in done {
            let Some(task_id) = task_id else {
                debug!(card = %card.sk, "card was a dry run: no task to update");
                continue;
            };
            if let Err(f) = self.call(STATUS_BAR_PATH, &body(Some(task_id))).await {
                return Outcome::Failed(f);
            }
            updated.push(task_id);
        }
        if too_old.is_empty() {
            return Outcome::Sent(json!({ "updated_task_ids": updated }));
        }
        Outcome::Sent(json!({ "updated_task_ids": updated, "too_old_task_ids": too_old }))
    }
}

#[async_trait]
impl ConnectorPart for DingTalk {
    type Config = DingTalkConfig;
    type RouteOptions = DingTalkRoute;
    const WINDOW: Option<(u32, &'static str)> = Some((
        7 * 24 * 3600,
        "DingTalk changes a card's status bar for 7 days after the send",
    ));
    /// DingTalk's 服务器出口IP list (errcode 60020 from any other address).
    const CALLER_ALLOWLIST: Option<super::Allowlist> = Some(super::Allowlist {
        system: "DingTalk",
        place: "DingTalk's developer console (open-dev.dingtalk.com): 应用开发 → 企业内部应用 → the app → 开发管理 → \
            服务器出口IP. Without it every call is refused with errcode 60020",
    });

    fn check(config: &DingTalkConfig) -> Result<(), ConfigError> {
        if config.app_key.is_some() != config.app_secret.is_some() {
            return Err(ConfigError::Invalid(
                "connectors.dingtalk: set both app_key and app_secret, or neither for dry-run"
                    .into(),
            ));
        }
        Ok(())
    }

    fn render(config: &DingTalkConfig) -> Arc<dyn Render> {
        Arc::new(Style::from(config))
    }

    async fn build(
        config: &DingTalkConfig,
        secrets: &Secrets,
        ports: &Ports,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let secret = match &config.app_secret {
            Some(s) => Some(secrets.resolve(s).await?),
            None => None,
        };
        let connector = DingTalk::new(config, secret, ports)
            .map_err(|e| ConfigError::Invalid(format!("connectors.dingtalk: HTTP client: {e}")))?;
        if connector.dry_run() {
            warn!("DingTalk has no app_key/app_secret: dry-run, requests are recorded, not sent");
        }
        Ok(Arc::new(connector))
    }
}

#[async_trait]
impl Connector for DingTalk {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    async fn preflight(&self, scope: &crate::preflight::Scope) -> Vec<crate::preflight::Check> {
        self.preflight_checks(scope).await
    }

    fn dry_run(&self) -> bool {
        matches!(self.mode, Mode::DryRun)
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        match &d.action {
            Action::Send => self.send(d).await,
            Action::Own(a) if a == UPDATE_STATUS => self.update_status(d).await,
            other @ Action::Own(_) => super::no_call("DingTalk", other),
            Action::Revoke => Outcome::Failed(Failure::Permanent(
                "revokes are made by the sender loop, through recall".into(),
            )),
        }
    }

    /// `recall` of the card or notice a send made; DingTalk takes back messages sent within the
    /// last 24 hours, so an older one is refused without a call.
    async fn recall(&self, d: &Delivery, now: Millis) -> Result<Value, Failure> {
        let task_id = d
            .result
            .as_ref()
            .and_then(|r| r.get("task_id"))
            .filter(|_| d.was_sent() && matches!(d.status, Status::Sent | Status::Checking))
            .ok_or_else(|| {
                Failure::Permanent(format!(
                    "delivery {} is not a sent DingTalk message (it has no task_id)",
                    d.key()
                ))
            })?;
        let age = now - d.updated_at;
        if age > RECALL_WINDOW {
            return Err(Failure::Permanent(format!(
                "sent {} h ago: DingTalk takes back work notifications within 24 h only",
                age / 3_600_000
            )));
        }
        let body = json!({ "agent_id": self.agent_id, "msg_task_id": task_id });
        if self.dry_run() {
            return Ok(json!({ "requests": [{ "path": RECALL_PATH, "body": body }] }));
        }
        self.call(RECALL_PATH, &body).await?;
        Ok(json!({ "recalled_task_id": task_id }))
    }
}

/// A written count's new total for `app`'s month: kept for the follow-ups' 80 % rule,
/// published as the share of the quota used, and warned about at 80 % and 100 %.
fn quota_total(seen: &AtomicU64, app: &str, quota: u64, total: u64, added: u64) {
    seen.store(total, Ordering::Relaxed);
    // A quota of 0 is none: nothing to be a share of.
    if quota > 0 {
        let percent = total as f64 * 100.0 / quota as f64;
        metrics::record(&QUOTA_USED, &[("App", app)], percent);
    }
    if let Some(said) = quota_warning(total, added, quota) {
        warn!(calls = total, quota, app = %app, "{said}");
    }
}

/// What to say when `added` calls brought the month's count to `calls`: at 80 % and at 100 %
/// of `quota`, once each.
fn quota_warning(calls: u64, added: u64, quota: u64) -> Option<&'static str> {
    match super::quota_crossed(calls, added, quota)? {
        100 => Some(
            "DingTalk's monthly API quota is used up by hookbridge's count: sends fail with 90020 until next month unless the organisation's edition allows more (connectors.dingtalk.monthly_quota)",
        ),
        _ => Some(
            "80 % of DingTalk's monthly API quota is used by hookbridge's count (connectors.dingtalk.monthly_quota): sends are no longer followed up",
        ),
    }
}

/// How long after a send DingTalk still takes a work notification back.
const RECALL_WINDOW: Millis = 24 * 3_600_000;

/// How long after a send DingTalk still changes an OA card's status bar.
const STATUS_BAR_WINDOW: Millis = 7 * 24 * 3_600_000;

#[cfg(test)]
mod tests {
    use super::quota_warning;

    #[test]
    fn the_quota_warns_once_at_80_and_once_at_100_percent() {
        let said: Vec<(u64, bool)> = (1..=5_001)
            .filter_map(|calls| quota_warning(calls, 1, 5_000).map(|s| (calls, s.contains("80 %"))))
            .collect();
        assert_eq!(said, [(4_000, true), (5_000, false)]);
        assert!(
            quota_warning(4_010, 20, 5_000).is_some(),
            "a batch that jumps the mark"
        );
        assert!(quota_warning(1_000_000, 1, 0).is_none(), "0: no quota");
        assert!(
            quota_warning(4, 1, 5).unwrap().contains("80 %"),
            "80 % of 5 is 4"
        );
    }
}
