//! What `hookbridge check --online` asks DingTalk, read-only: a token (the AppKey and AppSecret,
//! and whether DingTalk takes calls from this address: 60020 names the one it refused), whether
//! `agent_id` is the app's (`getsendprogress` of a task that does not exist answers 40035 for
//! the app's own agent and 40056 for another), and whether the mapped userids exist
//! (`/topapi/v2/user/get`: 60121 for an unknown one; it needs the app's 通讯录 read permission).
//! Every call that succeeds counts against the monthly quota like a send.

use serde_json::json;

use super::follow_up::PROGRESS_PATH;
use super::{CONNECTOR, DingTalk, Mode};
use crate::preflight::{Check, Scope};

pub const USER_GET_PATH: &str = "/topapi/v2/user/get";

impl DingTalk {
    pub(super) async fn preflight_checks(&self, scope: &Scope) -> Vec<Check> {
        let Mode::Live { api, tokens } = &self.mode else {
            return vec![Check::note(
                CONNECTOR,
                "dry-run (no app_secret): nothing is sent, nothing to ask",
            )];
        };
        let mut out = vec![];
        if let Err(f) = tokens.fetch(api).await {
            out.push(Check::fail(CONNECTOR, format!("no access token: {}", f)));
            return out;
        }
        out.push(Check::pass(
            CONNECTOR,
            "gettoken works: the AppKey and AppSecret are the app's, and it takes calls from this address",
        ));
        let agent = json!({ "agent_id": self.agent_id, "task_id": 1 });
        out.push(match self.call(PROGRESS_PATH, &agent).await {
            Ok(_) => Check::pass(
                CONNECTOR,
                format!("agent_id {} is the app's", self.agent_id),
            ),
            Err(f) if f.to_string().contains("errcode 40035") => Check::pass(
                CONNECTOR,
                format!("agent_id {} is the app's", self.agent_id),
            ),
            Err(f) => Check::fail(CONNECTOR, format!("agent_id {}: {}", self.agent_id, f)),
        });
        let (users, left) = scope.users_to_check();
        let (mut found, mut unknown) = (0, vec![]);
        for user in &users {
            match self.call(USER_GET_PATH, &json!({ "userid": user })).await {
                Ok(_) => found += 1,
                Err(f) if f.to_string().contains("errcode 60121") => unknown.push(*user),
                Err(f) => {
                    out.push(Check::note(
                        CONNECTOR,
                        format!(
                            "the mapped userids could not be checked ({}): the app needs the \
                             通讯录 read permission (成员信息读权限) for that",
                            f
                        ),
                    ));
                    return out;
                }
            }
        }
        if !unknown.is_empty() {
            out.push(Check::fail(
                CONNECTOR,
                format!(
                    "not userids of this organization: {}: fix [recipients.dingtalk.map] or the routes' users",
                    unknown.join(", ")
                ),
            ));
        }
        if found > 0 {
            out.push(Check::pass(
                CONNECTOR,
                format!("{found} mapped userids exist"),
            ));
        }
        if left > 0 {
            out.push(Check::note(
                CONNECTOR,
                format!("{left} more userids not checked (--max-users)"),
            ));
        }
        out
    }
}
