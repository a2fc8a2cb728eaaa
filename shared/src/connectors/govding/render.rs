//! 浙政钉 work notifications (`/message/workNotification`) from a notice: the `msg` in the
//! DingTalk work-notification shapes (OA card, markdown, text; ≤ 2048 bytes by construction),
//! to accountIds (at most 1000 a call) or to organizations (20 codes a call). Pure, config only.

use serde::{Deserialize, Serialize};

use super::{CONNECTOR, GovDingConfig};
use crate::connectors::dingtalk_msg::{NoticeFormat, card_msg, notice_msg};
use crate::connectors::{BadTarget, Call, Plan, Render, RenderError, Target};
use crate::event::{Action, Millis};
use crate::notice::{Intent, Notice, Report};

/// Receivers (accountIds and organization codes together) per call.
pub const MAX_RECEIVERS: usize = 1000;
/// Organization codes per call: public sources disagree between 20 and 1000; 20 is safe.
pub const MAX_ORGANIZATIONS: usize = 20;

/// What a `govding` delivery carries: the call's parameters but `bizMsgId`, which the sender
/// derives from the delivery's own key so that every resend of it carries the same one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkNotification {
    pub tenant_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub receiver_ids: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub organization_codes: String,
    /// Recipients given as employee codes, turned into accountIds at send time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub employee_codes: String,
    /// The message as JSON text, exactly as it is posted.
    pub msg: String,
}

/// How this tenant's notifications look: from `[connectors.govding]`, no secrets.
#[derive(Debug, Clone)]
pub struct GovDingRender {
    tenant_id: String,
    notice_format: NoticeFormat,
    default_url: Option<String>,
    employee_codes: bool,
}

impl From<&GovDingConfig> for GovDingRender {
    fn from(c: &GovDingConfig) -> Self {
        GovDingRender {
            tenant_id: c.tenant_id.clone(),
            notice_format: c.notice_format,
            default_url: c.default_url.clone(),
            employee_codes: c.employee_codes,
        }
    }
}

impl GovDingRender {
    /// A to-do is an OA card where it links somewhere; 浙政钉 has no status bar to flip.
    fn card_url(&self, n: &Notice) -> Option<String> {
        match n.intent {
            Intent::Todo { .. } => n.link.clone().or_else(|| self.default_url.clone()),
            _ => None,
        }
    }
}

impl Render for GovDingRender {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    /// `group`: organization codes, comma-separated, sent to instead of users.
    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        if instance.is_some() {
            return Err(BadTarget(
                "浙政钉 routes take no `instance`; `group` names organization codes".into(),
            ));
        }
        Ok(Target {
            group: group.map(str::to_owned),
            ..Target::default()
        })
    }

    fn markdown(&self, n: &Notice, _: &Target) -> bool {
        self.card_url(n).is_none() && self.notice_format == NoticeFormat::Markdown
    }

    /// One call per 1000 users or per 20 organizations. A finished to-do sends nothing: the
    /// gateway has no documented way to change a sent notification. A receipt about one of
    /// its sends (routing asks with no users) is noted on that send; a route to people gets a
    /// notice like any other.
    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        match &n.intent {
            Intent::Finish { .. } => return Ok(Plan::default()),
            Intent::Receipt {
                connector,
                reference,
                report,
            } if *connector == CONNECTOR && users.is_empty() => {
                return receipt(report, reference, n.time);
            }
            Intent::Changed { connector, ids } if *connector == CONNECTOR && users.is_empty() => {
                return forget(ids);
            }
            _ => {}
        }
        let msg = match self.card_url(n) {
            Some(url) => card_msg(n, &url, None),
            None => notice_msg(self.notice_format, n),
        };
        let msg = serde_json::to_string(&msg)?;
        let organizations: Vec<String> = target
            .group
            .iter()
            .flat_map(|g| g.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        let chunks: Vec<(Vec<String>, Vec<String>)> = if organizations.is_empty() {
            users
                .chunks(MAX_RECEIVERS)
                .map(|u| (u.to_vec(), vec![]))
                .collect()
        } else {
            organizations
                .chunks(MAX_ORGANIZATIONS)
                .map(|o| (vec![], o.to_vec()))
                .collect()
        };
        let calls = chunks
            .into_iter()
            .map(|(users, orgs)| {
                // accountIds are numbers; anything else is an employee code, if so configured.
                let (codes, ids): (Vec<&String>, Vec<&String>) = users
                    .iter()
                    .partition(|u| self.employee_codes && !u.bytes().all(|b| b.is_ascii_digit()));
                let join =
                    |v: Vec<&String>| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                let body = WorkNotification {
                    tenant_id: self.tenant_id.clone(),
                    receiver_ids: join(ids),
                    organization_codes: orgs.join(","),
                    employee_codes: join(codes),
                    msg: msg.clone(),
                };
                let recipients = if orgs.is_empty() {
                    users
                } else {
                    orgs.iter().map(|o| format!("org:{o}")).collect()
                };
                Ok(Call {
                    action: Action::Send,
                    recipients,
                    message: serde_json::to_value(body)?,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Plan {
            calls,
            unmapped: vec![],
        })
    }

    fn recipient_noun(&self) -> &'static str {
        "浙政钉 accountId"
    }
}

/// The call that notes a [`Receipt`] on the send it is about.
pub const RECEIPT: &str = "receipt";
/// The call that drops cached accountIds of changed employees.
pub const FORGET: &str = "forget";

/// What the gateway reported about one of our sends, to note on that delivery: the status
/// (`read`, `pushed`, `failed`, `revoked`, `sent`), who it concerns, and `msgType`/`msgApp`,
/// which a later revoke of the same message needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub biz_msg_id: String,
    pub status: String,
    #[serde(default)]
    pub receivers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub msg_app: String,
    pub at: Millis,
}

/// Changed employees: their cached accountIds are dropped.
fn forget(codes: &[String]) -> Result<Plan, RenderError> {
    Ok(Plan {
        calls: vec![Call {
            action: Action::own(FORGET),
            recipients: codes.to_vec(),
            message: serde_json::json!({ "employeeCodes": codes }),
        }],
        unmapped: vec![],
    })
}

fn receipt(report: &Report, reference: &str, at: Millis) -> Result<Plan, RenderError> {
    let r = Receipt {
        biz_msg_id: reference.to_owned(),
        status: report.status.clone(),
        receivers: report.concerns.clone(),
        msg_type: report.message_type.clone(),
        msg_app: report.app.clone(),
        at,
    };
    Ok(Plan {
        calls: vec![Call {
            action: Action::own(RECEIPT),
            recipients: report.concerns.clone(),
            message: serde_json::to_value(r)?,
        }],
        unmapped: vec![],
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::notice::TodoStatus;

    fn render() -> GovDingRender {
        GovDingRender {
            tenant_id: "196729".into(),
            notice_format: NoticeFormat::Markdown,
            default_url: None,
            employee_codes: true,
        }
    }

    fn notice(intent: Intent, link: Option<&str>) -> Notice {
        Notice {
            title: "员工离职".into(),
            text: "租户 196729".into(),
            link: link.map(str::to_owned),
            ..Notice::new("浙政钉", intent, "abc123", 1_715_495_400_000, json!({}))
        }
    }

    fn bodies(plan: &Plan) -> Vec<WorkNotification> {
        plan.calls
            .iter()
            .map(|c| serde_json::from_value(c.message.clone()).unwrap())
            .collect()
    }

    #[test]
    fn users_go_in_calls_of_1000_with_one_msg() {
        let users: Vec<String> = (0..2500).map(|i| format!("{}", 10_000 + i)).collect();
        let plan = render()
            .plan(&notice(Intent::Message, None), &Target::default(), users)
            .unwrap();
        let sizes: Vec<usize> = plan.calls.iter().map(|c| c.recipients.len()).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let first = &bodies(&plan)[0];
        assert_eq!(first.tenant_id, "196729");
        assert!(first.receiver_ids.starts_with("10000,10001,"));
        let msg: Value = serde_json::from_str(&first.msg).unwrap();
        assert_eq!(msg["msgtype"], "markdown");
        assert!(first.msg.len() <= 2048);
    }

    #[test]
    fn employee_codes_are_kept_apart_for_the_sender_to_look_up() {
        let users = vec!["10001".to_owned(), "GE_1".to_owned(), "GE_2".to_owned()];
        let plan = render()
            .plan(&notice(Intent::Message, None), &Target::default(), users)
            .unwrap();
        let b = &bodies(&plan)[0];
        assert_eq!(
            (b.receiver_ids.as_str(), b.employee_codes.as_str()),
            ("10001", "GE_1,GE_2")
        );
        let changed = Intent::Changed {
            connector: "govding",
            ids: vec!["GE_1".into()],
        };
        let plan = render()
            .plan(&notice(changed, None), &Target::default(), vec![])
            .unwrap();
        assert_eq!(plan.calls[0].action, Action::own(FORGET));
        assert_eq!(plan.calls[0].recipients, ["GE_1"]);
    }

    #[test]
    fn organizations_go_20_a_call_instead_of_users() {
        let codes: Vec<String> = (0..45).map(|i| format!("GO_{i}")).collect();
        let target = render().target(None, Some(&codes.join(","))).unwrap();
        let plan = render()
            .plan(&notice(Intent::Message, None), &target, vec![])
            .unwrap();
        let b = bodies(&plan);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].organization_codes.split(',').count(), 20);
        assert!(b.iter().all(|c| c.receiver_ids.is_empty()));
        assert_eq!(
            plan.calls[2].recipients,
            [
                "org:GO_40",
                "org:GO_41",
                "org:GO_42",
                "org:GO_43",
                "org:GO_44"
            ]
        );
        assert!(render().target(Some("x"), None).is_err());
    }

    #[test]
    fn a_todo_with_a_link_is_an_oa_card_and_its_finish_sends_nothing() {
        let todo = notice(
            Intent::Todo {
                id: "t".into(),
                status: TodoStatus::default(),
            },
            Some("https://hap/x"),
        );
        let plan = render()
            .plan(&todo, &Target::default(), vec!["1".into()])
            .unwrap();
        let msg: Value = serde_json::from_str(&bodies(&plan)[0].msg).unwrap();
        assert_eq!(msg["msgtype"], "oa");
        assert_eq!(msg["oa"]["message_url"], "https://hap/x");
        assert!(msg["oa"].get("status_bar").is_none());
        assert!(!render().markdown(&todo, &Target::default()));
        let finish = Intent::Finish {
            todo_id: "t".into(),
            todo_event: "EVT#hap#t".into(),
            todo_kind: "todo",
            status: TodoStatus::default(),
        };
        let plan = render()
            .plan(&notice(finish, None), &Target::default(), vec!["1".into()])
            .unwrap();
        assert!(plan.calls.is_empty());
    }
}
