//! `hookbridge check --online`: before going live, each configured connector asks its system
//! read-only questions (do the credentials work, are the ids in the config real, is this
//! address listed) and answers a line each, ✔ or ✖ with what to do. Connectors answer from their
//! own folders ([`crate::connectors::Connector::preflight`]), asked by
//! [`crate::app::App::preflight`]; this file has what they are asked about and the lines.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Said for the operator's information: neither passes nor fails the check.
    Note,
}

/// One answer: which part, and what it found (or what to do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub part: String,
    pub verdict: Verdict,
    pub text: String,
}

impl Check {
    pub fn pass(part: &str, text: impl Into<String>) -> Check {
        Check::new(part, Verdict::Pass, text)
    }
    pub fn fail(part: &str, text: impl Into<String>) -> Check {
        Check::new(part, Verdict::Fail, text)
    }
    pub fn note(part: &str, text: impl Into<String>) -> Check {
        Check::new(part, Verdict::Note, text)
    }
    fn new(part: &str, verdict: Verdict, text: impl Into<String>) -> Check {
        Check {
            part: part.to_owned(),
            verdict,
            text: text.into(),
        }
    }
}

/// `✔ part: text`; what a remote system said is escaped as the log escapes it.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.verdict {
            Verdict::Pass => '✔',
            Verdict::Fail => '✖',
            Verdict::Note => '·',
        };
        let (part, text) = (
            crate::logging::escape(&self.part),
            crate::logging::escape(&self.text),
        );
        write!(f, "{mark} {part}: {text}")
    }
}

/// What the config asks one connector to reach: the ids to check there, its routes' targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The connector's recipient ids the config names: `[recipients.<connector>.map]` values
    /// and routes' `users`.
    pub users: BTreeSet<String>,
    /// Routes' `(instance, group)` for this connector, where they name a group.
    pub groups: BTreeSet<(Option<String>, String)>,
    /// Post a real test message where that is the only way to know (robots).
    pub send_test: bool,
    /// Check at most this many users: each is an API call, and some systems count them against
    /// a quota.
    pub max_users: usize,
}

impl Scope {
    /// The users to check, and how many are left unchecked.
    pub fn users_to_check(&self) -> (Vec<&str>, usize) {
        let checked: Vec<&str> = self
            .users
            .iter()
            .take(self.max_users)
            .map(String::as_str)
            .collect();
        let left = self.users.len() - checked.len();
        (checked, left)
    }
}

/// Whether any answer failed.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_escape_what_systems_said() {
        let line = Check::fail("zentao", "refused: \u{1b}[31mred\nFORGED").to_string();
        assert!(line.starts_with("✖ zentao: refused: "), "{line}");
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    }
}
