//! `hookbridge check --online`: before going live, each configured connector asks its system
//! read-only questions (do the credentials work, are the ids in the config real, is this
//! address listed) and answers a line each, ✔ or ✖ with what to do. Connectors answer from their
//! own folders ([`crate::connectors::Connector::preflight`]); this file gathers what the config
//! names for each of them and prints the lines.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::delivery::Sender;

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
    pub fn of(config: &Config, connector: &str, send_test: bool, max_users: usize) -> Scope {
        let mut users: BTreeSet<String> = config
            .recipients
            .get(connector)
            .map(|m| m.map.values().cloned().collect())
            .unwrap_or_default();
        let mut groups = BTreeSet::new();
        for route in config.routes.iter().filter(|r| r.connector == connector) {
            users.extend(route.users.iter().flatten().cloned());
            if let Some(group) = &route.group {
                groups.insert((route.instance.clone(), group.clone()));
            }
        }
        Scope {
            users,
            groups,
            send_test,
            max_users,
        }
    }

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

/// Asks every configured connector that `sender` runs.
pub async fn online(
    sender: &Sender,
    config: &Config,
    send_test: bool,
    max_users: usize,
) -> Vec<Check> {
    let mut out = vec![];
    for name in config.connectors.configured() {
        let scope = Scope::of(config, name, send_test, max_users);
        // A sender function runs its own connector only: it answers for that one.
        if let Some(c) = sender.connector(name) {
            out.extend(c.preflight(&scope).await);
        }
    }
    out
}

/// Whether any answer failed.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_is_what_the_config_names_for_the_connector() {
        let config = Config::from_toml(
            r#"
            [sources.hap]
            tokens = ["plain:t"]
            [sources.dms]
            [connectors.dingtalk]
            agent_id = 1
            [connectors.zentao.main]
            base_url = "https://z.example.com"
            code = "c"
            [[routes]]
            source = "hap"
            connector = "zentao"
            group = "g1"
            [[routes]]
            source = "dms"
            connector = "zentao"
            users = ["wangwu"]
            [recipients.zentao.map]
            a = "zhangsan"
            b = "lisi"
            [recipients.dingtalk.map]
            a = "ding-user"
            "#,
        )
        .unwrap();
        let scope = Scope::of(&config, "zentao", false, 2);
        assert_eq!(
            scope.users.iter().collect::<Vec<_>>(),
            ["lisi", "wangwu", "zhangsan"]
        );
        assert_eq!(
            scope.groups.iter().collect::<Vec<_>>(),
            [&(None, "g1".to_owned())]
        );
        assert_eq!(scope.users_to_check(), (vec!["lisi", "wangwu"], 1));
    }

    #[test]
    fn lines_escape_what_systems_said() {
        let line = Check::fail("zentao", "refused: \u{1b}[31mred\nFORGED").to_string();
        assert!(line.starts_with("✖ zentao: refused: "), "{line}");
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    }
}
