//! Taking back what an event sent ([`Intent::Revoke`](crate::notice::Intent), a route's
//! `recall_on_finish`): the sends of that event through the same connector, each recalled with
//! [`Connector::recall`] as an operator's `hookbridge deliveries recall` does one. The sender
//! loop runs it for any connector; one without a recall API says so, and the delivery is dead
//! with that reason.

use serde_json::json;

use crate::connectors::Connector;
use crate::event::{Action, Delivery, Failure, Millis, Outcome, Status};
use crate::store::HistoryStore;

/// Recalls the sends of `d`'s event (`{"event": key}`) to `d`'s recipients, or all its sends
/// when they were sent none. Waits while one of them is still going out.
pub async fn revoke(
    connector: &dyn Connector,
    history: &dyn HistoryStore,
    d: &Delivery,
    now: Millis,
) -> Outcome {
    let Some(of) = d.message["event"].as_str() else {
        return Outcome::Failed(Failure::Permanent("a revoke names no event".into()));
    };
    let sends: Vec<Delivery> = match history.deliveries_of(of).await {
        Ok(all) => all
            .into_iter()
            .filter(|s| s.connector == d.connector && s.action == Action::Send)
            .collect(),
        Err(e) => return Outcome::Failed(Failure::Transient(e.to_string())),
    };
    let theirs: Vec<&Delivery> = sends
        .iter()
        .filter(|s| s.recipients.iter().any(|r| d.recipients.contains(r)))
        .collect();
    let mine = if theirs.is_empty() {
        sends.iter().collect()
    } else {
        theirs
    };
    if mine.is_empty() {
        return Outcome::Skipped(format!("nothing was sent for {of} through {}", d.connector));
    }
    if let Some(s) = mine.iter().find(|s| !s.status.is_final() && !s.was_sent()) {
        return Outcome::Wait(format!(
            "{} is {}; it can be taken back once it is sent",
            s.sk,
            s.status.as_str()
        ));
    }
    let (mut taken, mut refused) = (vec![], vec![]);
    for s in mine
        .iter()
        .filter(|s| matches!(s.status, Status::Sent | Status::Checking))
    {
        match connector.recall(s, now).await {
            Ok(result) => taken.push(json!({ "delivery": s.sk, "result": result })),
            Err(Failure::Permanent(reason)) => refused.push(format!("{}: {reason}", s.sk)),
            Err(f) => return Outcome::Failed(f),
        }
    }
    match (taken.is_empty(), refused.is_empty()) {
        (true, true) => Outcome::Skipped("none of its sends had gone out".into()),
        (true, false) => Outcome::Failed(Failure::Permanent(refused.join("; "))),
        _ => Outcome::Sent(json!({ "recalled": taken, "refused": refused })),
    }
}
