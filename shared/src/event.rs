//! The normalized [`Event`], its [`Delivery`] items, and the delivery state machine.
//!
//! An event is what a source sent us, stored once under its dedupe key. Each delivery is one
//! call a connector must make for it. A delivery moves through
//! `pending → sending → sent | dry_run | skipped | retrying | waiting | checking | undelivered |
//! dead`, and `retrying | waiting | checking → pending` when the sweeper finds it due.
//! [`settle`] is the only place that decides the next status.
//!
//! Only a real failure spends the attempt budget. Waiting for another delivery (a to-do card
//! still being sent) and being throttled (the connector asked us to slow down) do not: they
//! have their own deadline, `max_wait_secs` from the delivery's creation.

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

/// The calendar month of `ms` in Beijing time, `YYYY-MM`: the period API quotas count in.
pub fn beijing_month(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&beijing())
        .format("%Y-%m")
        .to_string()
}

/// The day of `ms` in Beijing time, `YYYY-MM-DD`, and when the next one starts: the period
/// daily limits count in.
pub fn beijing_day(ms: Millis) -> (String, Millis) {
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&beijing());
    let next = t
        .date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| d.and_local_timezone(beijing()).single())
        .map_or(ms + 86_400_000, |d| d.timestamp_millis());
    (t.format("%Y-%m-%d").to_string(), next)
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

/// The most deliveries one event makes: each is a write before the source is answered, and a
/// route that fans out further is a mistake to say, not to send.
pub const MAX_DELIVERIES: usize = 99;

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

impl DeliveryKey {
    /// The connector named in the sort key (`DLV#<connector>#<n>`).
    pub fn connector(&self) -> Option<&str> {
        self.sk
            .strip_prefix("DLV#")?
            .rsplit_once('#')
            .map(|(c, _)| c)
    }
}

/// For log lines: a key made from a very long source id is cut ([`crate::logging::LogId`]).
impl std::fmt::Display for DeliveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = format!("{}/{}", self.pk, self.sk);
        crate::logging::LogId(&key).fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// Parked until `next_attempt_at` because it depends on another delivery (the card whose
    /// status bar it changes); the reason is in `last_error`. Not an attempt.
    Waiting,
    /// Sent, and parked until `next_attempt_at`, when its connector asks the receiving system
    /// what became of it (DingTalk `getsendresult`). Not an attempt.
    Checking,
    /// Accepted by the receiving system, which then reported that nobody got it (every
    /// recipient forbidden or invalid); the reason is in `last_error`.
    Undelivered,
    /// Given up; the reason is in `last_error`.
    Dead,
    /// Sent, then taken back at an operator's word; the receipts say when and how.
    Recalled,
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                format!("no status {s:?}; one of {}", all.join(", "))
            })
    }
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Pending,
        Status::Sending,
        Status::Sent,
        Status::DryRun,
        Status::Skipped,
        Status::Retrying,
        Status::Waiting,
        Status::Checking,
        Status::Undelivered,
        Status::Dead,
        Status::Recalled,
    ];

    /// The statuses a delivery is parked in until `next_attempt_at`, when the sweeper makes it
    /// pending again (for `sending`: when its claim lapses).
    pub const PARKED: [Status; 4] = [
        Status::Retrying,
        Status::Waiting,
        Status::Checking,
        Status::Sending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::DryRun => "dry_run",
            Status::Skipped => "skipped",
            Status::Retrying => "retrying",
            Status::Waiting => "waiting",
            Status::Checking => "checking",
            Status::Undelivered => "undelivered",
            Status::Dead => "dead",
            Status::Recalled => "recalled",
        }
    }

    /// Whether the status-due index lists deliveries in this status.
    pub fn is_indexed(self) -> bool {
        self.is_parked() || self == Status::Dead
    }

    /// One of [`Status::PARKED`].
    pub fn is_parked(self) -> bool {
        Status::PARKED.contains(&self)
    }

    /// The connector call has been made (or rendered, in dry-run) and its result recorded.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Sent | Status::DryRun)
    }

    /// No further attempt will be made.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Sent
                | Status::DryRun
                | Status::Skipped
                | Status::Undelivered
                | Status::Dead
                | Status::Recalled
        )
    }
}

/// What a delivery's call does. Sending and taking back are every connector's; any other call
/// is one connector's own (DingTalk `update_status`, 浙政钉 `receipt` and `forget`), named and
/// handled in its folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Action {
    /// Send a new message.
    Send,
    /// Take back what an earlier event sent (`{"event": <its key>}`), for these recipients'
    /// sends, or all when they had none.
    Revoke,
    /// The connector's own call by that name, on an earlier send or on what it keeps.
    Own(String),
}

impl Action {
    pub fn own(name: &str) -> Action {
        Action::Own(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::Send => "send",
            Action::Revoke => "revoke",
            Action::Own(name) => name,
        }
    }
}

impl From<String> for Action {
    fn from(name: String) -> Action {
        match name.as_str() {
            "send" => Action::Send,
            "revoke" => Action::Revoke,
            _ => Action::Own(name),
        }
    }
}

impl From<Action> for String {
    fn from(a: Action) -> String {
        match a {
            Action::Own(name) => name,
            other => other.as_str().to_owned(),
        }
    }
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
    /// What the receiving system reported later (pushed, read, failed, revoked), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Value>,
    pub last_error: Option<String>,
    /// Retrying: when to try again. Sending: when the claim lapses.
    pub next_attempt_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Each time an operator replayed it after it died: when, and what it had come to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replays: Vec<Replay>,
    /// Each attempt's answer, in order (waits and throttles spend no attempt and are not here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<Answer>,
}

/// What one attempt came to: when, the status it left, and what the system said when it was
/// not a plain success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub at: Millis,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
}

impl Answer {
    /// The answer `settled` records for the attempt `claimed` made, unless it was no attempt (a
    /// wait or a throttle, which give the attempt back; a sent delivery's follow-up).
    pub fn of(claimed: &Delivery, settled: &Settled, now: Millis) -> Option<Answer> {
        (!claimed.was_sent() && settled.attempts >= claimed.attempts).then(|| Answer {
            at: now,
            status: settled.status,
            said: settled.last_error.clone(),
        })
    }
}

/// A dead delivery made pending again by an operator, with a fresh attempt budget and wait
/// deadline. What it had come to is kept, so the record says it was replayed and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    pub at: Millis,
    /// Attempts spent before the replay.
    pub attempts: u32,
    /// Why it had died.
    pub error: Option<String>,
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
            receipts: vec![],
            last_error: None,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
            replays: vec![],
            answers: vec![],
        }
    }

    /// Taking back what event `of` sent through `connector`, for `users` (who finished).
    pub fn revoke(
        event_pk: &str,
        connector: &str,
        of: &str,
        users: Vec<String>,
        now: Millis,
    ) -> Self {
        let message = serde_json::json!({ "event": of });
        Delivery::new(event_pk, connector, 0, Action::Revoke, users, message, now)
    }

    /// A delivery stored to be seen and never sent: a report of recipients without a mapping,
    /// or a request that could not be rendered; `reason` says which.
    pub fn unsent(
        event_pk: &str,
        connector: &str,
        status: Status,
        recipients: Vec<String>,
        reason: String,
        now: Millis,
    ) -> Self {
        let mut d = Delivery::new(
            event_pk,
            connector,
            0,
            Action::Send,
            recipients,
            Value::Null,
            now,
        );
        d.status = status;
        d.last_error = Some(reason);
        d
    }

    pub fn key(&self) -> DeliveryKey {
        DeliveryKey {
            pk: self.pk.clone(),
            sk: self.sk.clone(),
        }
    }

    /// The source of the event it belongs to (`EVT#<source>#<key>`).
    pub fn source(&self) -> &str {
        let rest = self.pk.strip_prefix("EVT#").unwrap_or_default();
        rest.split_once('#').map_or(rest, |(s, _)| s)
    }

    /// A send whose call was made and answered: claiming it again (to check what became of
    /// it) is not an attempt, and must never send it twice.
    pub fn was_sent(&self) -> bool {
        self.action == Action::Send && self.result.is_some()
    }

    /// Where waiting and throttling deadlines count from: creation, or the last replay.
    pub fn clock_start(&self) -> Millis {
        self.replays.last().map_or(self.created_at, |r| r.at)
    }

    /// What a replay at `now` makes of this dead delivery: pending, with a new budget, and the
    /// replay noted. `None` unless it is dead: anything else is under way or was delivered.
    /// This delivery taken back at `now` (`note` says how), when it was sent.
    pub fn recalled(&self, note: Value, now: Millis) -> Option<Delivery> {
        if !matches!(self.status, Status::Sent | Status::Checking) {
            return None;
        }
        let mut d = self.clone();
        d.status = Status::Recalled;
        d.next_attempt_at = None;
        d.updated_at = now;
        d.receipts.push(note);
        Some(d)
    }

    /// The delivery sent again with a fresh attempt budget, if it is dead or was left behind
    /// pending ([`LEFT_BEHIND`]).
    pub fn replayed(&self, now: Millis) -> Option<Delivery> {
        let left_behind = self.status == Status::Pending && now - self.updated_at >= LEFT_BEHIND;
        if self.status != Status::Dead && !left_behind {
            return None;
        }
        let mut d = self.clone();
        d.replays.push(Replay {
            at: now,
            attempts: d.attempts,
            error: d.last_error.take(),
        });
        d.status = Status::Pending;
        d.attempts = 0;
        d.next_attempt_at = None;
        d.updated_at = now;
        Some(d)
    }
}

/// How long a delivery stays pending before an operator may replay it as left behind. A sender
/// takes a pending delivery within seconds; on AWS one stays pending when its stream record
/// ended in the failure queue (the store down through every retry, a sender an hour behind),
/// which the sweeper does not look at. Replaying one that was only slow is harmless: one claim
/// wins.
pub const LEFT_BEHIND: Millis = 15 * 60_000;

/// Which deliveries an operator asks for; every field left out matches all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryFilter {
    pub status: Option<Status>,
    pub source: Option<String>,
    pub connector: Option<String>,
    /// Updated at or after this time.
    pub since: Option<Millis>,
}

impl DeliveryFilter {
    pub fn matches(&self, d: &Delivery) -> bool {
        self.status.is_none_or(|s| s == d.status)
            && self.source.as_deref().is_none_or(|s| s == d.source())
            && self.connector.as_deref().is_none_or(|c| c == d.connector)
            && self.since.is_none_or(|t| d.updated_at >= t)
    }
}

/// Which events an operator asks for (also those that made no delivery: an unreadable body, an
/// event no route takes); every field left out matches all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventFilter {
    pub source: Option<String>,
    pub kind: Option<String>,
    /// Part of the source's id of it (HAP's messageId, an alert's fingerprint…).
    pub key: Option<String>,
    /// Received at or after this time.
    pub since: Option<Millis>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.source.as_deref().is_none_or(|s| s == e.source)
            && self.kind.as_deref().is_none_or(|k| k == e.kind)
            && self.key.as_deref().is_none_or(|k| e.key.contains(k))
            && self.since.is_none_or(|t| e.received_at >= t)
    }
}

/// Why a connector call did not succeed, classified by the protocol's own codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Worth retrying later (5xx, network, a send not finished yet).
    #[error("{0}")]
    Transient(String),
    /// The connector asked us to slow down (rate limit, system busy): back-pressure, not a
    /// failure of this delivery. Try again after `wait` ms; no attempt is spent.
    #[error("{reason}")]
    Throttled { reason: String, wait: Millis },
    /// Retrying cannot help (bad recipient, bad config, client bug).
    #[error("{0}")]
    Permanent(String),
}

/// What a connector reports for one claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent(Value),
    /// Sent (or checked once already, and not settled yet): ask the receiving system what
    /// became of it `after` ms from now. The claim that led here was no failure.
    Check {
        result: Value,
        after: Millis,
    },
    /// The receiving system reported that nobody got it; `reason` says why, for a person.
    Undelivered {
        result: Value,
        reason: String,
    },
    DryRun(Value),
    Skipped(String),
    /// Not possible yet (e.g. the card to update is still being sent); try again later
    /// without counting it against the attempt budget.
    Wait(String),
    Failed(Failure),
}

/// Backoff and give-up rules for one connector.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts before a transiently failing delivery is dead.
    pub max_attempts: u32,
    /// The pause after the first failed attempt, in seconds; doubled per attempt, with jitter.
    pub backoff_base_secs: u32,
    /// The longest pause between two attempts, in seconds.
    pub backoff_cap_secs: u32,
    /// How long a delivery may wait, without spending attempts, for another delivery (the card
    /// whose status bar it changes) or while its connector throttles us, counted from its
    /// creation. No longer than a configured connector's window (DingTalk: 7 days).
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
            max_wait_secs: 24 * 3600,
            claim_lease_secs: 300,
        }
    }
}

impl RetryPolicy {
    /// How long after a "wait" to look again: an eighth of the time waited so far, between the
    /// backoff base and 15 minutes, so a short wait is noticed soon and a long one costs few
    /// claims.
    pub fn wait_poll(&self, waited: Millis) -> Millis {
        let base = i64::from(self.backoff_base_secs) * 1000;
        (waited / 8).clamp(base, base.max(15 * 60 * 1000))
    }

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
    /// The attempts spent: the claim's count, or one less when the claim was not an attempt
    /// (a wait, a throttle).
    pub attempts: u32,
    pub result: Option<Value>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Millis>,
}

/// Decides what a claimed delivery becomes after `outcome`.
pub fn settle(claimed: &Delivery, outcome: Outcome, policy: &RetryPolicy, now: Millis) -> Settled {
    let unspent = claimed.attempts.saturating_sub(1);
    let spent = if claimed.was_sent() {
        unspent
    } else {
        claimed.attempts
    };
    let parked = |status, attempts, reason: String, at: Millis| Settled {
        status,
        attempts,
        result: claimed.result.clone(),
        last_error: Some(reason),
        next_attempt_at: Some(at),
    };
    let final_ = |status, attempts, result, reason| Settled {
        status,
        attempts,
        result,
        last_error: reason,
        next_attempt_at: None,
    };
    let waited = now - claimed.clock_start();
    let out_of_time = waited > i64::from(policy.max_wait_secs) * 1000;
    match outcome {
        Outcome::Sent(result) => final_(Status::Sent, spent, Some(result), None),
        Outcome::Check { result, after } => Settled {
            status: Status::Checking,
            attempts: spent,
            result: Some(result),
            last_error: None,
            next_attempt_at: Some(now + after.max(0)),
        },
        Outcome::Undelivered { result, reason } => {
            final_(Status::Undelivered, spent, Some(result), Some(reason))
        }
        Outcome::DryRun(result) => final_(Status::DryRun, spent, Some(result), None),
        Outcome::Skipped(reason) => {
            final_(Status::Skipped, spent, claimed.result.clone(), Some(reason))
        }
        Outcome::Failed(Failure::Permanent(reason)) => {
            final_(Status::Dead, spent, claimed.result.clone(), Some(reason))
        }
        Outcome::Failed(Failure::Transient(reason)) if spent >= policy.max_attempts => final_(
            Status::Dead,
            spent,
            claimed.result.clone(),
            Some(format!(
                "gave up after {spent} attempts; last error: {reason}"
            )),
        ),
        Outcome::Failed(Failure::Transient(reason)) => {
            let at = now + policy.backoff(spent);
            parked(Status::Retrying, spent, reason, at)
        }
        Outcome::Failed(Failure::Throttled { reason, .. }) if out_of_time => final_(
            Status::Dead,
            unspent,
            claimed.result.clone(),
            Some(format!(
                "throttled for longer than delivery.max_wait_secs ({} s); last answer: {reason}",
                policy.max_wait_secs
            )),
        ),
        Outcome::Failed(Failure::Throttled { reason, wait }) => {
            // Equal jitter, so deliveries throttled together do not return together.
            let wait = wait.max(1000);
            let at = now + wait + fastrand::i64(0..=wait / 2);
            parked(Status::Retrying, unspent, reason, at)
        }
        Outcome::Wait(reason) if out_of_time => final_(
            Status::Dead,
            unspent,
            claimed.result.clone(),
            Some(format!(
                "waited longer than delivery.max_wait_secs ({} s): {reason}",
                policy.max_wait_secs
            )),
        ),
        Outcome::Wait(reason) => {
            let at = now + policy.wait_poll(waited);
            parked(Status::Waiting, unspent, reason, at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beijing_day_ends_at_its_midnight_utc_plus_8() {
        // 2026-12-06T16:30:00Z is 00:30 on the 7th in Beijing.
        let ms = 1_796_574_600_000;
        let (day, next) = beijing_day(ms);
        assert_eq!(day, "2026-12-07");
        assert_eq!(next - ms, 23 * 3_600_000 + 30 * 60_000);
        assert_eq!(beijing_day(next).0, "2026-12-08");
        assert_eq!(beijing_day(next - 1).0, "2026-12-07");
    }

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

    /// Stored deliveries keep their action's name: the shared two and any connector's own
    /// read back as what they were (items written before actions were the connectors' too).
    #[test]
    fn actions_are_stored_by_name() {
        for (name, action) in [
            ("send", Action::Send),
            ("revoke", Action::Revoke),
            ("update_status", Action::own("update_status")),
            ("receipt", Action::own("receipt")),
        ] {
            let stored = serde_json::to_value(&action).unwrap();
            assert_eq!(stored, serde_json::json!(name));
            assert_eq!(serde_json::from_value::<Action>(stored).unwrap(), action);
        }
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
    fn waiting_and_throttling_spend_no_attempt_and_end_after_max_wait() {
        let policy = RetryPolicy::default();
        let s = settle(
            &claimed(1),
            Outcome::Wait("card pending".into()),
            &policy,
            5_000,
        );
        assert_eq!((s.status, s.attempts), (Status::Waiting, 0));
        assert_eq!(
            s.next_attempt_at,
            Some(5_000 + 30_000),
            "first look after the base"
        );
        let throttled = || {
            Outcome::Failed(Failure::Throttled {
                reason: "90018".into(),
                wait: 2_000,
            })
        };
        let s = settle(&claimed(policy.max_attempts), throttled(), &policy, 5_000);
        assert_eq!(
            (s.status, s.attempts),
            (Status::Retrying, policy.max_attempts - 1),
            "a throttle at the last attempt is not the last attempt"
        );
        let at = s.next_attempt_at.unwrap();
        assert!((7_000..=8_000).contains(&at), "{at}");
        let late = 1_000 + i64::from(policy.max_wait_secs) * 1000 + 1;
        let s = settle(&claimed(1), throttled(), &policy, late);
        assert_eq!(s.status, Status::Dead);
        assert!(s.last_error.unwrap().contains("throttled for longer"));
        let late = 1_000 + i64::from(policy.max_wait_secs) * 1000 + 1;
        let s = settle(
            &claimed(3),
            Outcome::Wait("card pending".into()),
            &policy,
            late,
        );
        assert_eq!(s.status, Status::Dead);
        assert!(
            s.last_error
                .unwrap()
                .contains("delivery.max_wait_secs (86400 s)")
        );
    }

    #[test]
    fn a_check_parks_the_sent_delivery_and_its_claims_are_no_attempts() {
        let policy = RetryPolicy::default();
        let sent = settle(
            &claimed(1),
            Outcome::Check {
                result: serde_json::json!({"task_id": 7}),
                after: 60_000,
            },
            &policy,
            5_000,
        );
        assert_eq!(
            (sent.status, sent.attempts, sent.next_attempt_at),
            (Status::Checking, 1, Some(65_000))
        );
        assert!(Status::Checking.is_parked() && Status::Checking.is_indexed());
        let mut check = claimed(2);
        check.result = sent.result.clone();
        assert!(check.was_sent());
        let nobody = settle(
            &check,
            Outcome::Undelivered {
                result: serde_json::json!({"task_id": 7}),
                reason: "all forbidden".into(),
            },
            &policy,
            70_000,
        );
        assert_eq!(
            (nobody.status, nobody.attempts, nobody.last_error.as_deref()),
            (Status::Undelivered, 1, Some("all forbidden"))
        );
        assert!(Status::Undelivered.is_final() && !Status::Undelivered.is_done());
        assert_eq!("checking".parse::<Status>(), Ok(Status::Checking));
    }

    #[test]
    fn wait_polls_grow_with_the_time_waited() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait_poll(0), 30_000);
        assert_eq!(p.wait_poll(3_600_000), 450_000);
        assert_eq!(p.wait_poll(86_400_000), 900_000);
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

    #[test]
    fn a_replay_restarts_budget_and_wait_and_is_noted() {
        let policy = RetryPolicy::default();
        let mut dead = claimed(8);
        dead.status = Status::Dead;
        dead.last_error = Some("HTTP 502".into());
        let day = i64::from(policy.max_wait_secs) * 1000;
        let replayed = dead.replayed(1_000 + 2 * day).unwrap();
        assert_eq!(replayed.status, Status::Pending);
        assert_eq!(replayed.attempts, 0);
        assert_eq!(replayed.last_error, None);
        assert_eq!(
            replayed.replays,
            vec![Replay {
                at: 1_000 + 2 * day,
                attempts: 8,
                error: Some("HTTP 502".into())
            }]
        );
        // Two days after creation, a throttle is still within the replay's own deadline.
        let mut claim = replayed.clone();
        claim.status = Status::Sending;
        claim.attempts = 1;
        let throttled = Outcome::Failed(Failure::Throttled {
            reason: "90018".into(),
            wait: 1_000,
        });
        let s = settle(&claim, throttled, &policy, 1_000 + 2 * day + 5_000);
        assert_eq!(s.status, Status::Retrying);
        assert!(
            claimed(1).replayed(5_000).is_none(),
            "only dead ones replay, and pending ones left behind"
        );
    }

    #[test]
    fn filters_match_status_source_connector_and_time() {
        let mut d = claimed(1);
        d.updated_at = 5_000;
        let all = DeliveryFilter::default();
        assert!(all.matches(&d));
        let f = |s: &str| -> DeliveryFilter { serde_json::from_str(s).unwrap() };
        assert!(f(r#"{"status":"sending","source":"hap","connector":"dingtalk"}"#).matches(&d));
        assert!(!f(r#"{"status":"dead"}"#).matches(&d));
        assert!(!f(r#"{"source":"dms"}"#).matches(&d));
        assert!(!f(r#"{"connector":"zentao"}"#).matches(&d));
        assert!(f(r#"{"since":5000}"#).matches(&d));
        assert!(!f(r#"{"since":5001}"#).matches(&d));
        assert_eq!("dead".parse::<Status>(), Ok(Status::Dead));
        assert!("gone".parse::<Status>().unwrap_err().contains("dry_run"));
    }

    #[test]
    fn months_are_beijing_months() {
        // 2026-11-30T16:00Z is midnight of 2026-12-01 in Beijing.
        assert_eq!(beijing_month(1_796_054_400_000), "2026-12");
        assert_eq!(beijing_month(1_796_054_400_000 - 1), "2026-11");
    }
}
