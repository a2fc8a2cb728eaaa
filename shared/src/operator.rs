//! What an operator does with deliveries, the same wherever they are stored (the data file of
//! `serve`, the stack's DynamoDB table) and however it is asked (the CLI on the store, or a
//! running `serve` over HTTP): find them, look at one, replay the dead, recall the sent.

use serde_json::json;

use crate::app::App;
use crate::event::{Delivery, DeliveryKey, Millis, Status};
use crate::store::{DeliveryStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    BadId(String),
    #[error("no delivery {0}")]
    NotFound(String),
    /// The delivery is not in a state the action applies to.
    #[error("{0}")]
    Refused(String),
    /// The connector's system refused or failed the call; the reason is recorded too.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A delivery id as shown by `hookbridge deliveries`: `<pk>/<sk>`. The sort key
/// (`DLV#<connector>#<n>`) never holds a `/`; the event key may.
pub fn parse_id(id: &str) -> Result<DeliveryKey, OperatorError> {
    match id.rsplit_once('/') {
        Some((pk, sk)) if pk.starts_with("EVT#") && sk.starts_with("DLV#") => Ok(DeliveryKey {
            pk: pk.to_owned(),
            sk: sk.to_owned(),
        }),
        _ => Err(OperatorError::BadId(format!(
            "{id:?} is not a delivery id: <pk>/<sk>, e.g. EVT#hap#m1/DLV#dingtalk#000"
        ))),
    }
}

pub async fn show(store: &dyn DeliveryStore, key: &DeliveryKey) -> Result<Delivery, OperatorError> {
    store
        .delivery(key)
        .await?
        .ok_or_else(|| OperatorError::NotFound(key.to_string()))
}

/// Gives a dead delivery, or one left behind pending, a fresh attempt budget and hands it to its
/// sender; the record keeps what it had come to ([`crate::event::Replay`]).
pub async fn replay(
    store: &dyn DeliveryStore,
    key: &DeliveryKey,
    now: Millis,
) -> Result<Delivery, OperatorError> {
    if let Some(d) = store.replay(key, now).await? {
        return Ok(d);
    }
    let d = show(store, key).await?;
    Err(OperatorError::Refused(format!(
        "{key} is {}: only dead deliveries are replayed, and pending ones left behind for {} minutes",
        d.status.as_str(),
        crate::event::LEFT_BEHIND / 60_000
    )))
}

/// Only what was sent (and may still be being checked) can be taken back.
pub fn recallable(d: &Delivery) -> Result<(), OperatorError> {
    if matches!(d.status, Status::Sent | Status::Checking) {
        return Ok(());
    }
    if d.status == Status::Recalled {
        return Err(OperatorError::Refused(format!(
            "{} was recalled at {}: there is nothing left to take back",
            d.key(),
            beijing_time(d.updated_at)
        )));
    }
    Err(OperatorError::Refused(format!(
        "{} is {}: only sent deliveries can be recalled",
        d.key(),
        d.status.as_str()
    )))
}

/// Asks the delivery's connector to take back what it sent, and notes the attempt on the
/// delivery's receipts whatever the answer, so the record says who recalled it and how it went;
/// once taken back, the delivery is `recalled` and a second recall asks the connector nothing.
pub async fn recall(app: &App, key: &DeliveryKey, now: Millis) -> Result<Delivery, OperatorError> {
    let store: &dyn Store = app.store.as_ref();
    let d = show(store, key).await?;
    recallable(&d)?;
    let connector = app.sender.connector(&d.connector).ok_or_else(|| {
        OperatorError::Refused(format!("no connector {:?} is configured here", d.connector))
    })?;
    match connector.recall(&d, now).await {
        Ok(result) => {
            let note =
                json!({ "status": "recalled", "at": now, "by": "operator", "result": result });
            // A follow-up may record in between (checking → sent): read it again and mark it.
            for _ in 0..3 {
                if let Some(recalled) = store.recalled(key, &note, now).await? {
                    return Ok(recalled);
                }
            }
            store.add_receipt(key, &note).await?;
            show(store, key).await
        }
        Err(f) => {
            let reason = f.to_string();
            let note =
                json!({ "status": "recall_failed", "at": now, "by": "operator", "reason": reason });
            store.add_receipt(key, &note).await?;
            Err(OperatorError::Failed(reason))
        }
    }
}

/// A time as operators read it: Beijing time, to the second.
pub fn beijing_time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&crate::event::beijing())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// `--since`: a time ago (`90s`, `30m`, `12h`, `7d`) or a date and time (RFC 3339, or
/// `YYYY-MM-DD` taken as Beijing midnight, the sources' local time).
pub fn since(text: &str, now: Millis) -> Result<Millis, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "--since {text:?}: give 90s, 30m, 12h or 7d ago, or a time like 2026-12-01T08:00:00+08:00 or 2026-12-01"
        )
    };
    if let Some(unit) = text.chars().last().filter(char::is_ascii_alphabetic) {
        let n: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let ms = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        return Ok(now - n.checked_mul(ms).ok_or_else(bad)?);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?;
    let midnight = day
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(crate::event::beijing()).single())
        .ok_or_else(bad)?;
    Ok(midnight.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_at_the_last_slash() {
        let k = parse_id("EVT#hap#a/b/DLV#dingtalk#001").unwrap();
        assert_eq!(
            (k.pk.as_str(), k.sk.as_str()),
            ("EVT#hap#a/b", "DLV#dingtalk#001")
        );
        for bad in ["", "EVT#hap#m1", "x/DLV#dingtalk#000", "EVT#hap#m1/000"] {
            assert!(
                matches!(parse_id(bad), Err(OperatorError::BadId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn since_takes_durations_and_dates() {
        let now = 1_800_000_000_000;
        assert_eq!(since("90s", now), Ok(now - 90_000));
        assert_eq!(since("2h", now), Ok(now - 7_200_000));
        assert_eq!(since("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(
            since("2026-12-01T08:00:00+08:00", now),
            Ok(1_796_083_200_000)
        );
        assert_eq!(since("2026-12-01", now), Ok(1_796_054_400_000));
        for bad in [
            "",
            "h",
            "5w",
            "yesterday",
            "2026-13-01",
            "99999999999999999d",
        ] {
            assert!(since(bad, now).unwrap_err().contains("--since"), "{bad}");
        }
    }
}
