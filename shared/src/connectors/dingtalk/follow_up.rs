//! What became of a send: DingTalk answers `errcode 0` to a work notification it then drops
//! (the daily cap, the same content twice a day, a userid it does not know), so a send is
//! followed up with `getsendprogress` / `getsendresult` for its task id. The follow-up comes
//! back through the same delivery, scheduled by the sweeper (status `checking`): no sleeping in
//! a function, no extra item. It only asks, so a Lambda sender does not claim it (one write
//! instead of three; `Sender::follow_up`). Pure: the calls are made by the connector in `mod.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::event::{Millis, Outcome};

/// How much the connector asks DingTalk what became of a send (`connectors.dingtalk.follow_up`,
/// or a route's `follow_up`). Each follow-up call counts against the monthly API quota like a
/// send.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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

pub const PROGRESS_PATH: &str = "/topapi/message/corpconversation/getsendprogress";
pub const RESULT_PATH: &str = "/topapi/message/corpconversation/getsendresult";

/// How often `full` asks for progress before it reads the result anyway.
pub const MAX_PROGRESS_POLLS: u64 = 4;
/// How often a follow-up that failed on the way (network, throttled) is tried again.
pub const MAX_CHECK_FAILURES: u64 = 3;
/// DingTalk answers progress and results for a day after the send (the narrower of its
/// documented windows).
pub const CHECK_WINDOW: Millis = 24 * 3_600_000;

/// `send_result` of `getsendresult`; every list may be absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendResult {
    pub read_user_id_list: Vec<String>,
    pub unread_user_id_list: Vec<String>,
    pub invalid_user_id_list: Vec<String>,
    pub failed_user_id_list: Vec<String>,
    pub forbidden_user_id_list: Vec<String>,
    pub forbidden_list: Vec<Forbidden>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Forbidden {
    /// A string on the wire; some answers carry a number.
    #[serde(deserialize_with = "code_text")]
    pub code: String,
    pub count: Option<i64>,
    pub userid: String,
}

fn code_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        v => v.to_string(),
    })
}

/// What one recipient's outcome was, as `hookbridge deliveries show` prints it.
pub fn outcomes(r: &SendResult) -> BTreeMap<String, String> {
    let mut by_user = BTreeMap::new();
    let lists = [
        (&r.read_user_id_list, "read"),
        (&r.unread_user_id_list, "unread"),
        (&r.failed_user_id_list, "failed"),
        (&r.forbidden_user_id_list, "forbidden"),
        (&r.invalid_user_id_list, "invalid userid"),
    ];
    for (users, what) in lists {
        for u in users {
            by_user.insert(u.clone(), what.to_owned());
        }
    }
    for f in &r.forbidden_list {
        by_user.insert(
            f.userid.clone(),
            format!("forbidden {}", forbidden_reason(&f.code)),
        );
    }
    by_user
}

/// What a `forbidden_list` code means, for whoever reads the delivery.
pub fn forbidden_reason(code: &str) -> String {
    let why = match code {
        "143105" | "143205" => "the person's daily cap of messages from this app is reached",
        "143106" | "143206" => {
            "the same content already reached the person today (DingTalk shows it once a day)"
        }
        "143103" | "143203" => "the app's per-minute recipient limit was reached",
        "143104" | "143204" => "the organisation's per-minute recipient limit was reached",
        "1430002" => "the content was judged forbidden",
        "1430003" => "DingTalk's system protection held it back",
        "1430004" => "the person has executive protection on",
        _ => "by DingTalk",
    };
    format!("{code}: {why}")
}

/// The settled outcome of a send from its `getsendresult`: `undelivered` when none of
/// `recipients` got it, with who and why; `sent` otherwise, the per-user outcomes recorded.
pub fn verdict(mut result: Value, send_result: &Value, recipients: &[String]) -> Outcome {
    let parsed: SendResult = serde_json::from_value(send_result.clone()).unwrap_or_default();
    let by_user = outcomes(&parsed);
    result["send_result"] = json!(parsed);
    result["outcomes"] = json!(by_user);
    let lost = |u: &String| {
        by_user.get(u).is_some_and(|o| {
            o.starts_with("forbidden") || o.starts_with("invalid") || o.starts_with("failed")
        })
    };
    if recipients.is_empty() || !recipients.iter().all(lost) {
        return Outcome::Sent(result);
    }
    let who: Vec<String> = recipients
        .iter()
        .map(|u| format!("{u} ({})", by_user[u]))
        .collect();
    Outcome::Undelivered {
        result,
        reason: format!(
            "DingTalk accepted the send but nobody got it: {}",
            who.join("; ")
        ),
    }
}

/// Whether DingTalk reports the send finished (`progress.status` 2).
pub fn finished(progress: &Value) -> bool {
    progress["status"].as_i64() == Some(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn nobody_forbidden_or_invalid_is_undelivered_with_who_and_why() {
        let r = json!({
            "forbidden_list": [{"code": "143106", "count": 1, "userid": "u1"}],
            "invalid_user_id_list": ["u2"],
        });
        let Outcome::Undelivered { result, reason } =
            verdict(json!({"task_id": 5}), &r, &users(&["u1", "u2"]))
        else {
            panic!("not undelivered")
        };
        assert!(
            reason.contains("u1 (forbidden 143106: the same content"),
            "{reason}"
        );
        assert!(reason.contains("u2 (invalid userid)"), "{reason}");
        assert_eq!(result["task_id"], 5);
        assert_eq!(result["outcomes"]["u2"], "invalid userid");
    }

    #[test]
    fn one_reader_makes_it_sent_and_every_outcome_is_kept() {
        let r = json!({
            "read_user_id_list": ["u1"],
            "forbidden_list": [{"code": 143105, "count": 500, "userid": "u2"}],
        });
        let Outcome::Sent(result) = verdict(json!({"task_id": 5}), &r, &users(&["u1", "u2"]))
        else {
            panic!("not sent")
        };
        assert_eq!(result["outcomes"]["u1"], "read");
        assert!(
            result["outcomes"]["u2"]
                .as_str()
                .unwrap()
                .starts_with("forbidden 143105: the person's daily cap"),
            "a numeric code is read as text: {result}"
        );
        let unknown = verdict(
            json!({}),
            &json!({"unread_user_id_list": ["u1"]}),
            &users(&["u1"]),
        );
        assert!(matches!(unknown, Outcome::Sent(_)), "unread is delivered");
        let empty = verdict(json!({}), &json!(null), &users(&["u1"]));
        assert!(
            matches!(empty, Outcome::Sent(_)),
            "no report: trust the send"
        );
    }
}
