//! The normalized [`Event`], its [`Delivery`] items, and the delivery state machine.
//!
//! An event is what a source sent us, stored once under its dedupe key. Each delivery is one
//! call a connector must make for it. A delivery moves through
//! `pending → sending → sent | dry_run | skipped | retrying | dead`, and `retrying → pending`
//! when the sweeper finds it due. [`settle`] is the only place that decides the next status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch. Passed in explicitly so tests control the clock.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Beijing time (UTC+8, no daylight saving): how sources write local times and how readers
/// expect to see them.
pub fn beijing() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Source name, e.g. `hap`.
    pub source: String,
    /// Dedupe key within the source, e.g. the HAP `messageId`.
    pub key: String,
    /// What kind of event this is, in the source's terms (`todo`, `system`, `finish_todo`…).
    pub kind: String,
    pub received_at: Millis,
    /// The normalized fields of the event.
    pub payload: Value,
    /// The request body exactly as received, for audit and replay.
    pub raw: String,
}

impl Event {
    pub fn pk(&self) -> String {
        event_pk(&self.source, &self.key)
    }
}

pub fn event_pk(source: &str, key: &str) -> String {
    format!("EVT#{source}#{key}")
}

/// The sort key of an event's `n`th delivery through `connector`.
pub fn delivery_sk(connector: &str, n: usize) -> String {
    format!("DLV#{connector}#{n:03}")
}

/// Where a delivery lives: the event's partition key and the delivery's sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeliveryKey {
    pub pk: String,
    pub sk: String,
}

impl std::fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a sender (emits a stream record / feed item).
    Pending,
    /// Claimed by a sender; `next_attempt_at` is when the claim is considered abandoned.
    Sending,
    Sent,
    /// Rendered and recorded but not sent: the connector has no credentials.
    DryRun,
    /// Nothing to do (e.g. a finish for a to-do that was never sent); the reason is in `last_error`.
    Skipped,
    /// Parked until `next_attempt_at`; the sweeper makes it pending again.
    Retrying,
    /// Given up; the reason is in `last_error`.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::DryRun => "dry_run",
            Status::Skipped => "skipped",
            Status::Retrying => "retrying",
            Status::Dead => "dead",
        }
    }

    /// Whether the status-due index lists deliveries in this status.
    pub fn is_indexed(self) -> bool {
        matches!(self, Status::Sending | Status::Retrying | Status::Dead)
    }

    /// The connector call has been made (or rendered, in dry-run) and its result recorded.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Sent | Status::DryRun)
    }

    /// No further attempt will be made.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Sent | Status::DryRun | Status::Skipped | Status::Dead
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send a new message.
    Send,
    /// Update what an earlier send shows (DingTalk OA status bar).
    UpdateStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub pk: String,
    pub sk: String,
    pub connector: String,
    pub action: Action,
    pub status: Status,
    /// Claims so far (each claim is one attempt).
    pub attempts: u32,
    /// Connector-side recipients of this call (DingTalk userids).
    pub recipients: Vec<String>,
    /// The rendered request, connector-specific.
    pub message: Value,
    /// What the connector returned (e.g. DingTalk `task_id`).
    pub result: Option<Value>,
    pub last_error: Option<String>,
    /// Retrying: when to try again. Sending: when the claim lapses.
    pub next_attempt_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Delivery {
    pub fn new(
        event_pk: &str,
        connector: &str,
        n: usize,
        action: Action,
        recipients: Vec<String>,
        message: Value,
        now: Millis,
    ) -> Self {
        Delivery {
            pk: event_pk.to_owned(),
            sk: delivery_sk(connector, n),
            connector: connector.to_owned(),
            action,
            status: Status::Pending,
            attempts: 0,
            recipients,
            message,
            result: None,
            last_error: None,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn key(&self) -> DeliveryKey {
        DeliveryKey {
            pk: self.pk.clone(),
            sk: self.sk.clone(),
        }
    }
}

/// Why a connector call did not succeed, classified by the protocol's own codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Worth retrying later (throttling, busy, 5xx, network).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (bad recipient, bad config, client bug).
    #[error("{0}")]
    Permanent(String),
}

/// What a connector reports for one claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent(Value),
    DryRun(Value),
    Skipped(String),
    /// Not possible yet (e.g. the card to update is still being sent); try again later
    /// without counting it against the attempt budget.
    Wait(String),
    Failed(Failure),
}

/// Backoff and give-up rules for one connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_base_secs: u32,
    pub backoff_cap_secs: u32,
    /// How long a delivery may wait for something else before it is dead (the DingTalk
    /// status bar can only be updated within 7 days).
    pub max_wait_secs: u32,
    /// How long a claim may stay in `sending` before the sweeper assumes its sender died.
    pub claim_lease_secs: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            backoff_base_secs: 30,
            backoff_cap_secs: 3600,
            max_wait_secs: 7 * 24 * 3600,
            claim_lease_secs: 300,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random, so retries of many
    /// deliveries that failed together spread out but never come back sooner than half the step.
    pub fn backoff(&self, attempts: u32) -> Millis {
        let exp = attempts.saturating_sub(1).min(20);
        let step = (u64::from(self.backoff_base_secs) * 1000)
            .saturating_mul(1 << exp)
            .min(u64::from(self.backoff_cap_secs) * 1000);
        let half = step / 2;
        (half + fastrand::u64(0..=half)) as Millis
    }
}

/// The fields a sender writes back after a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub status: Status,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Millis>,
}

/// Decides what a claimed delivery becomes after `outcome`.
pub fn settle(claimed: &Delivery, outcome: Outcome, policy: &RetryPolicy, now: Millis) -> Settled {
    let done = |status, result| Settled {
        status,
        result: Some(result),
        last_error: None,
        next_attempt_at: None,
    };
    let dead = |reason: String| Settled {
        status: Status::Dead,
        result: claimed.result.clone(),
        last_error: Some(reason),
        next_attempt_at: None,
    };
    let retry = |reason: String| Settled {
        status: Status::Retrying,
        result: claimed.result.clone(),
        last_error: Some(reason),
        next_attempt_at: Some(now + policy.backoff(claimed.attempts)),
    };
    match outcome {
        Outcome::Sent(result) => done(Status::Sent, result),
        Outcome::DryRun(result) => done(Status::DryRun, result),
        Outcome::Skipped(reason) => Settled {
            status: Status::Skipped,
            result: claimed.result.clone(),
            last_error: Some(reason),
            next_attempt_at: None,
        },
        Outcome::Failed(Failure::Permanent(reason)) => dead(reason),
        Outcome::Failed(Failure::Transient(reason)) if claimed.attempts >= policy.max_attempts => {
            dead(format!(
                "gave up after {} attempts; last error: {reason}",
                claimed.attempts
            ))
        }
        Outcome::Failed(Failure::Transient(reason)) => retry(reason),
        Outcome::Wait(reason)
            if now - claimed.created_at > i64::from(policy.max_wait_secs) * 1000 =>
        {
            dead(format!(
                "waited longer than {} s; last reason: {reason}",
                policy.max_wait_secs
            ))
        }
        Outcome::Wait(reason) => retry(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(attempts: u32) -> Delivery {
        let mut d = Delivery::new(
            "EVT#hap#m1",
            "dingtalk",
            0,
            Action::Send,
            vec!["u1".into()],
            Value::Null,
            1_000,
        );
        d.status = Status::Sending;
        d.attempts = attempts;
        d
    }

    #[test]
    fn transient_failure_retries_then_dies_after_the_budget() {
        let policy = RetryPolicy::default();
        let failed = || Outcome::Failed(Failure::Transient("busy".into()));
        let s = settle(&claimed(1), failed(), &policy, 10_000);
        assert_eq!(s.status, Status::Retrying);
        let at = s.next_attempt_at.unwrap();
        assert!((10_000 + 15_000..=10_000 + 30_000).contains(&at), "{at}");
        let s = settle(&claimed(policy.max_attempts), failed(), &policy, 10_000);
        assert_eq!(s.status, Status::Dead);
        assert!(s.last_error.unwrap().contains("gave up after 8 attempts"));
    }

    #[test]
    fn permanent_failure_is_dead_with_its_reason() {
        let s = settle(
            &claimed(1),
            Outcome::Failed(Failure::Permanent("40056 bad agent".into())),
            &RetryPolicy::default(),
            0,
        );
        assert_eq!(s.status, Status::Dead);
        assert_eq!(s.last_error.as_deref(), Some("40056 bad agent"));
    }

    #[test]
    fn waiting_ends_after_max_wait() {
        let policy = RetryPolicy::default();
        let s = settle(
            &claimed(30),
            Outcome::Wait("card pending".into()),
            &policy,
            5_000,
        );
        assert_eq!(
            s.status,
            Status::Retrying,
            "waiting does not use the attempt budget"
        );
        let late = 1_000 + i64::from(policy.max_wait_secs) * 1000 + 1;
        let s = settle(
            &claimed(3),
            Outcome::Wait("card pending".into()),
            &policy,
            late,
        );
        assert_eq!(s.status, Status::Dead);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for attempts in 1..40 {
            let step = (30_000i64 << (attempts - 1).min(20)).min(3_600_000);
            let b = p.backoff(attempts);
            assert!(
                b >= step / 2 && b <= step,
                "attempt {attempts}: {b} vs {step}"
            );
        }
    }
}
