//! What `hookbridge check --online` asks each ZenTao instance, read-only: `getGroupChats` (the
//! entry, code and key, and whether the app takes calls from this address), ZenTao's clock
//! (from its web server's `Date`), every group a route names (it must exist and have members:
//! ZenTao sends a message for any other gid to every active user), and the mapped users:
//! numeric ids against `getChatUsers`, accounts against the REST API's user list through the
//! instance's `directory` login (the `im` API lists no accounts, and ZenTao answers success for
//! an account it does not know); without that login, accounts are not checked.

use std::collections::BTreeSet;

use super::api::Method;
use super::{TokenMode, UsersBy, ZenTao, lookup_group, string_map};
use crate::preflight::{Check, Scope};

/// Beyond this, in `time` token mode, clocks this far apart are worth fixing: another client of
/// the app on ZenTao's clock and hookbridge on its own would refuse each other's seconds.
const MAX_SKEW_SECS: i64 = 60;

impl ZenTao {
    pub(super) async fn preflight_checks(&self, scope: &Scope) -> Vec<Check> {
        let mut out = vec![];
        let only = (self.clients.len() == 1)
            .then(|| self.clients.keys().next())
            .flatten();
        for (name, client) in &self.clients {
            let part = format!("zentao {name}");
            let Some(client) = client else {
                out.push(Check::note(
                    &part,
                    "dry-run (no key): nothing is sent, nothing to ask",
                ));
                continue;
            };
            match client.call(Method::GetGroupChats, &[], None).await {
                Ok(v) => out.push(Check::pass(
                    &part,
                    format!(
                        "the entry, code and key work ({} group chats)",
                        string_map(&v["data"]).len()
                    ),
                )),
                Err(f) => {
                    out.push(Check::fail(&part, f.to_string()));
                    continue;
                }
            }
            out.push(match client.clock_skew().await {
                Ok(skew) if skew.abs() > MAX_SKEW_SECS && client.token_mode() == TokenMode::Time => {
                    Check::fail(
                        &part,
                        format!("ZenTao's clock is {skew} s from this machine's: set both by NTP (token_mode = \"time\")"),
                    )
                }
                Ok(skew) => Check::pass(&part, format!("ZenTao's clock is {skew} s from this machine's")),
                Err(f) => Check::note(&part, format!("ZenTao's clock could not be read: {}", f)),
            });
            for (_, gid) in scope
                .groups
                .iter()
                .filter(|(i, _)| i.as_deref().or(only.map(String::as_str)) == Some(name))
            {
                out.push(match lookup_group(name, client, gid).await {
                    Ok((group, members)) => Check::pass(
                        &part,
                        format!("group chat {gid} ({group}) has {members} members"),
                    ),
                    Err(f) => Check::fail(&part, f.to_string()),
                });
            }
            out.extend(self.check_users(&part, client, scope).await);
        }
        out
    }

    async fn check_users(&self, part: &str, client: &super::Client, scope: &Scope) -> Vec<Check> {
        if scope.users.is_empty() {
            return vec![];
        }
        let known: BTreeSet<String> = if client.users_by() == UsersBy::Account {
            match client.directory().await {
                Ok(Some(users)) => users.into_iter().map(|u| u.account).collect(),
                Ok(None) => {
                    return vec![Check::note(
                        part,
                        format!(
                            "{} mapped accounts not checked: ZenTao's im API lists no accounts, \
                             and answers success for one it does not know (reaching nobody). Give \
                             the instance a read-only directory login to check them",
                            scope.users.len()
                        ),
                    )];
                }
                Err(f) => return vec![Check::fail(part, f.to_string())],
            }
        } else {
            match client.call(Method::GetChatUsers, &[], None).await {
                Ok(v) => string_map(&v["data"]).into_keys().collect(),
                Err(f) => return vec![Check::fail(part, f.to_string())],
            }
        };
        let unknown: Vec<&str> = scope
            .users
            .iter()
            .filter(|u| !known.contains(*u))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            vec![Check::pass(
                part,
                format!("all {} mapped users are ZenTao's", scope.users.len()),
            )]
        } else {
            vec![Check::fail(
                part,
                format!(
                    "not ZenTao users: {}: ZenTao would answer success and reach nobody; fix \
                     [recipients.zentao.map] or the routes' users (hookbridge zentao users)",
                    unknown.join(", ")
                ),
            )]
        }
    }
}
