//! DingTalk work-notification requests (`asyncsend_v2`, status-bar updates) and their rules:
//! ≤ 100 userids a call, status bars only for ≤ 5, departments or everyone only when a route
//! says so. The `msg` inside is the DingTalk family's (`connectors/dingtalk_msg.rs`). Pure: no
//! I/O, no secrets, so a webhook function can render without any.

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{CONNECTOR, DingTalkConfig, DingTalkRoute, TodoFanout};
use crate::connectors::dingtalk_msg::*;
use crate::connectors::{BadTarget, Call, Plan, Render, RenderError, Target, route_options};
use crate::event::{Action, MAX_DELIVERIES};
use crate::notice::{Intent, MsgType, Notice};

/// `userid_list` entries per call.
pub const MAX_USERIDS: usize = 100;
/// Where a stored send keeps its route's follow-up (taken out before the request goes out).
pub const FOLLOW_UP_KEY: &str = "follow_up";
/// The call that flips the status bars of a to-do's cards (a [`StatusUpdate`]).
pub const UPDATE_STATUS: &str = "update_status";
/// The OA status bar only shows when a send has at most this many userids.
pub const MAX_STATUS_BAR_USERS: usize = 5;
/// `dept_id_list` entries per call.
pub const MAX_DEPARTMENTS: usize = 20;

/// The `asyncsend_v2` body (JSON form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncSend {
    pub agent_id: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub userid_list: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dept_id_list: Option<String>,
    pub to_all_user: bool,
    pub msg: Msg,
}

/// The message of an `update_status` delivery: which cards to flip, and to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The event whose cards to update.
    pub event: String,
    /// Only this user's card(s); `None`, or a user with no card, means every card.
    pub user: Option<String>,
    pub status_value: String,
    pub status_bg: String,
}

// ---- from a notice ----

/// How this organization's notices look: from `[connectors.dingtalk]`, no secrets.
#[derive(Debug, Clone)]
pub struct Style {
    pub agent_id: i64,
    pub fanout: TodoFanout,
    pub default_url: Option<String>,
    pub notice_format: NoticeFormat,
}

impl From<&DingTalkConfig> for Style {
    fn from(d: &DingTalkConfig) -> Self {
        Style {
            agent_id: d.agent_id,
            fanout: d.todo_fanout,
            default_url: d.default_url.clone(),
            notice_format: d.notice_format,
        }
    }
}

impl Style {
    /// Where a to-do's card links: the notice's link or the default. Without one, a to-do is
    /// sent as a notice (an OA card needs a URL).
    fn card_url(&self, n: &Notice) -> Option<String> {
        match n.intent {
            Intent::Todo { .. } => n.link.clone().or_else(|| self.default_url.clone()),
            _ => None,
        }
    }

    /// What a notice is sent as: its template's choice; else an OA card for a to-do with a
    /// link, and `notice_format` for the rest.
    fn kind(&self, n: &Notice) -> MsgType {
        match (n.msgtype, self.notice_format) {
            (Some(k), _) => k,
            (None, _) if self.card_url(n).is_some() => MsgType::Oa,
            (None, NoticeFormat::Markdown) => MsgType::Markdown,
            (None, NoticeFormat::Text) => MsgType::Text,
        }
    }

    /// The message of `kind` for `n`. A shape the notice lacks the parts for (an OA card or
    /// a link without a URL, a link without a picture, an action card without any link)
    /// falls back to the closest one it can fill, so every message is valid.
    fn msg(&self, kind: MsgType, n: &Notice, status_bar: Option<StatusBar>) -> Msg {
        let url = n.link.clone().or_else(|| self.default_url.clone());
        let fallback = |to: NoticeFormat| {
            warn!(tag = %n.tag, wanted = ?kind, "the notice lacks a link or picture for this msgtype");
            notice_msg(to, n)
        };
        match (kind, url) {
            (MsgType::Text, _) => notice_msg(NoticeFormat::Text, n),
            (MsgType::Markdown, _) => notice_msg(NoticeFormat::Markdown, n),
            (MsgType::Oa, Some(url)) => card_msg(n, &url, status_bar),
            (MsgType::Link | MsgType::FeedCard, Some(url)) => match &n.image {
                Some(pic) => link_msg(n, url, pic),
                None => fallback(NoticeFormat::Text),
            },
            (MsgType::ActionCard, url) => {
                action_card_msg(n, url).unwrap_or_else(|| fallback(NoticeFormat::Markdown))
            }
            (MsgType::Oa | MsgType::Link | MsgType::FeedCard, None) => fallback(NoticeFormat::Text),
        }
    }
}

impl Render for Style {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        match (instance, group) {
            (None, None) => Ok(Target::default()),
            _ => Err(BadTarget(
                "DingTalk routes take no `instance` or `group`: work notifications go to users"
                    .into(),
            )),
        }
    }

    fn markdown(&self, n: &Notice, _: &Target) -> bool {
        match self.kind(n) {
            MsgType::ActionCard => true,
            // An OA card or a link without its URL falls back to text.
            MsgType::Markdown => true,
            MsgType::Text | MsgType::Link | MsgType::Oa | MsgType::FeedCard => false,
        }
    }

    fn route_options(
        &self,
        options: &toml::Table,
        mut target: Target,
    ) -> Result<Target, BadTarget> {
        let o: DingTalkRoute = route_options(CONNECTOR, options)?;
        if o.to_all_user && !o.departments.is_empty() {
            return Err(BadTarget(
                "choose `to_all_user` or `departments`, not both".into(),
            ));
        }
        target.audience = o.to_all_user || !o.departments.is_empty();
        target.revoke_on_finish = o.recall_on_finish;
        target.options =
            serde_json::to_value(o).map_err(|e| BadTarget(format!("route options: {e}")))?;
        Ok(target)
    }

    /// A to-do: OA cards with a status bar (`todo_groups`); its finish: one status update of
    /// those cards; anything else: notices to at most 100 users each.
    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        let kind = self.kind(n);
        let route = match &target.options {
            serde_json::Value::Null => DingTalkRoute::default(),
            o => DingTalkRoute::deserialize(o)?,
        };
        let sends: Vec<(Vec<String>, AsyncSend)> = match (&n.intent, kind) {
            (
                Intent::Finish {
                    todo_event, status, ..
                },
                _,
            ) => {
                let done = todo_done(status);
                let update = StatusUpdate {
                    event: todo_event.clone(),
                    user: users.last().cloned(),
                    status_value: done.status_value,
                    status_bg: done.status_bg,
                };
                let message = serde_json::to_value(update)?;
                let call = Call {
                    action: Action::own(UPDATE_STATUS),
                    recipients: vec![],
                    message,
                };
                return Ok(Plan {
                    calls: vec![call],
                    unmapped: vec![],
                });
            }
            // The whole organisation or departments, as the route says: no status bar there.
            _ if route.to_all_user => {
                let mut send = self.send_to(&[], self.msg(kind, n, None));
                send.to_all_user = true;
                vec![(vec!["@all".to_owned()], send)]
            }
            _ if !route.departments.is_empty() => route
                .departments
                .chunks(MAX_DEPARTMENTS)
                .map(|depts| {
                    let mut send = self.send_to(&[], self.msg(kind, n, None));
                    send.dept_id_list = Some(depts.join(","));
                    let named = depts.iter().map(|d| format!("dept:{d}")).collect();
                    (named, send)
                })
                .collect(),
            (Intent::Todo { status, .. }, MsgType::Oa) if self.card_url(n).is_some() => {
                todo_groups(&users, self.fanout, MAX_DELIVERIES)
                    .into_iter()
                    .map(|g| {
                        let bar = (g.len() <= MAX_STATUS_BAR_USERS).then(|| todo_open(status));
                        let send = self.send_to(&g, self.msg(kind, n, bar));
                        (g, send)
                    })
                    .collect()
            }
            _ => users
                .chunks(MAX_USERIDS)
                .map(|g| (g.to_vec(), self.send_to(g, self.msg(kind, n, None))))
                .collect(),
        };
        let calls = sends
            .into_iter()
            .map(|(recipients, send)| {
                let mut message = serde_json::to_value(send)?;
                // The route's follow-up rides with the stored request; it is not sent.
                if let Some(f) = route.follow_up {
                    message[FOLLOW_UP_KEY] = serde_json::to_value(f)?;
                }
                Ok(Call {
                    action: Action::Send,
                    recipients,
                    message,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Plan {
            calls,
            unmapped: vec![],
        })
    }

    fn recipient_noun(&self) -> &'static str {
        "DingTalk userid"
    }
}

/// Card groups for a to-do: one per user (each flips on its own), or up to 5 per card.
/// Falls back to larger groups when more than `max_cards` cards would be needed.
fn todo_groups(users: &[String], fanout: TodoFanout, max_cards: usize) -> Vec<Vec<String>> {
    let per_user = fanout == TodoFanout::PerUser && users.len() <= max_cards;
    let size = if per_user {
        1
    } else if users.len().div_ceil(MAX_STATUS_BAR_USERS) <= max_cards {
        MAX_STATUS_BAR_USERS
    } else {
        warn!(
            users = users.len(),
            "too many to-do recipients for status bars; sending plain cards"
        );
        MAX_USERIDS
    };
    users.chunks(size).map(<[String]>::to_vec).collect()
}

impl Style {
    fn send_to(&self, users: &[String], msg: Msg) -> AsyncSend {
        AsyncSend {
            agent_id: self.agent_id,
            userid_list: users.join(","),
            dept_id_list: None,
            to_all_user: false,
            msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::notice::TodoStatus;

    fn style(fanout: TodoFanout, format: NoticeFormat, default_url: Option<&str>) -> Style {
        Style {
            agent_id: 77,
            fanout,
            default_url: default_url.map(str::to_owned),
            notice_format: format,
        }
    }

    fn per_user() -> Style {
        style(TodoFanout::PerUser, NoticeFormat::Markdown, None)
    }

    fn users(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("u{i}")).collect()
    }

    /// A rendered notice as a source and routing make it (2024-05-12 14:30 Beijing time).
    fn notice(intent: Intent, link: Option<&str>) -> Notice {
        Notice {
            app: Some("采购管理".into()),
            title: "待办｜采购管理".into(),
            text: "第一行\n第二行".into(),
            link: link.map(str::to_owned),
            ..Notice::new("HAP", intent, "8d3e6f1a", 1_715_495_400_000, json!({}))
        }
    }

    fn todo() -> Notice {
        notice(
            Intent::Todo {
                id: "8d3e6f1a".into(),
                status: TodoStatus::default(),
            },
            Some("https://hap/x"),
        )
    }

    fn sends(plan: &Plan) -> Vec<AsyncSend> {
        plan.calls
            .iter()
            .map(|c| serde_json::from_value(c.message.clone()).unwrap())
            .collect()
    }

    fn plan(style: &Style, n: &Notice, to: usize) -> Plan {
        style.plan(n, &Target::default(), users(to)).unwrap()
    }

    #[test]
    fn a_todo_is_one_card_per_user_with_a_status_bar() {
        let p = plan(&per_user(), &todo(), 12);
        assert_eq!(p.calls.len(), 12);
        for (i, (call, send)) in p.calls.iter().zip(sends(&p)).enumerate() {
            assert_eq!(call.recipients, [format!("u{i}")]);
            assert_eq!((send.agent_id, send.userid_list), (77, format!("u{i}")));
            let Msg::Oa { oa } = send.msg else {
                panic!("not OA")
            };
            assert_eq!(oa.status_bar.unwrap().status_value, "待处理");
            assert_eq!(oa.message_url, "https://hap/x");
            assert_eq!(oa.body.content.as_deref(), Some("#8d3e6f"));
            let rows: Vec<_> = oa
                .body
                .form
                .iter()
                .map(|r| (r.key.as_str(), r.value.as_str()))
                .collect();
            assert_eq!(
                rows,
                [
                    ("应用：", "采购管理"),
                    ("消息：", "第一行\n第二行"),
                    ("时间：", "2024-05-12 14:30")
                ]
            );
        }
    }

    #[test]
    fn chunk5_shares_cards_and_huge_todos_stay_within_one_transaction() {
        let chunk5 = style(TodoFanout::Chunk5, NoticeFormat::Markdown, None);
        let p = plan(&chunk5, &todo(), 12);
        let sizes: Vec<usize> = p.calls.iter().map(|c| c.recipients.len()).collect();
        assert_eq!(sizes, [5, 5, 2]);
        assert!(sends(&p).iter().all(|s| s.msg.has_status_bar()));
        assert_eq!(
            plan(&per_user(), &todo(), 150).calls.len(),
            30,
            "5 per card"
        );
        let p = plan(&per_user(), &todo(), 600);
        assert_eq!(p.calls.len(), 6, "beyond 495 users: plain cards of 100");
        assert!(sends(&p).iter().all(|s| !s.msg.has_status_bar()));
    }

    #[test]
    fn other_notices_are_markdown_in_chunks_of_100() {
        let n = notice(Intent::Message, None);
        let p = plan(&per_user(), &n, 150);
        let sizes: Vec<usize> = p.calls.iter().map(|c| c.recipients.len()).collect();
        assert_eq!(sizes, [100, 50]);
        let Msg::Markdown { markdown } = &sends(&p)[0].msg else {
            panic!()
        };
        assert_eq!(markdown.title, "待办｜采购管理");
        assert_eq!(
            markdown.text,
            "#### 待办｜采购管理 #8d3e6f  \n  第一行  \n  第二行  \n  ###### 2024-05-12 14:30"
        );
        assert!(per_user().markdown(&n, &Target::default()));
    }

    #[test]
    fn notices_can_be_plain_text() {
        let text = style(TodoFanout::PerUser, NoticeFormat::Text, None);
        let n = notice(Intent::Message, Some("https://hap/r"));
        let Msg::Text { text: t } = &sends(&plan(&text, &n, 1))[0].msg else {
            panic!("not text")
        };
        assert_eq!(
            t.content,
            "【待办｜采购管理】#8d3e6f\n第一行\n第二行\n查看详情：https://hap/r\n2024-05-12 14:30"
        );
        assert!(!text.markdown(&n, &Target::default()));
    }

    #[test]
    fn a_todo_without_any_url_is_a_notice() {
        let n = notice(
            Intent::Todo {
                id: "t".into(),
                status: TodoStatus::default(),
            },
            None,
        );
        assert!(matches!(
            sends(&plan(&per_user(), &n, 1))[0].msg,
            Msg::Markdown { .. }
        ));
        assert!(per_user().markdown(&n, &Target::default()));
        let with_default = style(
            TodoFanout::PerUser,
            NoticeFormat::Markdown,
            Some("https://hap"),
        );
        assert!(sends(&plan(&with_default, &n, 1))[0].msg.has_status_bar());
        assert!(
            !with_default.markdown(&n, &Target::default()),
            "card texts are plain"
        );
    }

    #[test]
    fn a_finish_is_one_status_update_for_the_user() {
        let n = notice(
            Intent::Finish {
                todo_id: "m1".into(),
                todo_event: "EVT#hap#m1".into(),
                todo_kind: "todo",
                status: TodoStatus::default(),
            },
            None,
        );
        let p = per_user()
            .plan(&n, &Target::default(), vec!["ding9".into()])
            .unwrap();
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].action, Action::own(UPDATE_STATUS));
        let u: StatusUpdate = serde_json::from_value(p.calls[0].message.clone()).unwrap();
        assert_eq!(
            (u.event.as_str(), u.user.as_deref(), u.status_value.as_str()),
            ("EVT#hap#m1", Some("ding9"), "已处理")
        );
        let everyone = per_user().plan(&n, &Target::default(), vec![]).unwrap();
        let u: StatusUpdate = serde_json::from_value(everyone.calls[0].message.clone()).unwrap();
        assert_eq!(u.user, None);
    }

    /// The bar says what the source says of its to-do (an alert: 告警中, then 已恢复).
    #[test]
    fn the_status_bar_reads_in_the_sources_words() {
        let alert = TodoStatus {
            open: "告警中".into(),
            done: "已恢复".into(),
            ..TodoStatus::default()
        };
        let todo = notice(
            Intent::Todo {
                id: "fp1".into(),
                status: alert.clone(),
            },
            Some("https://am/x"),
        );
        let sent = &sends(&plan(&per_user(), &todo, 1))[0].msg;
        let Msg::Oa { oa } = sent else {
            panic!("{sent:?}")
        };
        assert_eq!(oa.status_bar.as_ref().unwrap().status_value, "告警中");
        let finish = notice(
            Intent::Finish {
                todo_id: "fp1".into(),
                todo_event: "EVT#am#fp1".into(),
                todo_kind: "alert",
                status: alert,
            },
            None,
        );
        let p = per_user()
            .plan(&finish, &Target::default(), vec![])
            .unwrap();
        let u: StatusUpdate = serde_json::from_value(p.calls[0].message.clone()).unwrap();
        assert_eq!(u.status_value, "已恢复");
    }

    fn shaped(kind: MsgType, link: Option<&str>, buttons: &[(&str, &str)]) -> Notice {
        Notice {
            msgtype: Some(kind),
            buttons: buttons
                .iter()
                .map(|(t, u)| ((*t).to_owned(), (*u).to_owned()))
                .collect(),
            ..notice(Intent::Message, link)
        }
    }

    fn msg_of(n: &Notice) -> Msg {
        sends(&plan(&per_user(), n, 1)).remove(0).msg
    }

    #[test]
    fn a_template_picks_the_shape_and_what_cannot_be_built_falls_back() {
        let card = msg_of(&shaped(MsgType::ActionCard, Some("https://hap/r"), &[]));
        let Msg::ActionCard { action_card } = &card else {
            panic!("{card:?}")
        };
        assert_eq!(
            (
                action_card.single_title.as_deref(),
                action_card.single_url.as_deref()
            ),
            (Some("查看详情"), Some("https://hap/r")),
            "no buttons: the notice's link is the whole-card link"
        );
        assert!(
            action_card
                .markdown
                .starts_with("#### 待办｜采购管理 #8d3e6f")
        );
        assert!(matches!(
            msg_of(&shaped(MsgType::ActionCard, None, &[])),
            Msg::Markdown { .. }
        ));
        assert!(
            matches!(
                msg_of(&shaped(MsgType::Link, Some("https://hap/r"), &[])),
                Msg::Text { .. }
            ),
            "a link needs a picture"
        );
        let mut pictured = shaped(MsgType::Link, Some("https://hap/r"), &[]);
        pictured.image = Some("@lADO".into());
        let Msg::Link { link } = msg_of(&pictured) else {
            panic!()
        };
        assert_eq!(
            link.title, "待办｜采购管理 #8d3e6f",
            "the tag ends the title"
        );
        assert!(matches!(
            msg_of(&shaped(MsgType::Oa, None, &[])),
            Msg::Text { .. }
        ));
        let oa = msg_of(&shaped(MsgType::Oa, Some("https://hap/r"), &[]));
        assert!(
            matches!(oa, Msg::Oa { .. }) && !oa.has_status_bar(),
            "a notice card has no bar"
        );
        let t = Target::default();
        let md = |k| per_user().markdown(&shaped(k, None, &[]), &t);
        assert!(md(MsgType::ActionCard) && md(MsgType::Markdown));
        assert!(!md(MsgType::Text) && !md(MsgType::Link) && !md(MsgType::Oa));
    }

    #[test]
    fn action_card_buttons_keep_to_dingtalks_limits() {
        let long_url = format!("https://hap/{}", "x".repeat(700));
        let one = msg_of(&shaped(
            MsgType::ActionCard,
            None,
            &[("同意", "https://hap/ok")],
        ));
        let Msg::ActionCard { action_card } = one else {
            panic!()
        };
        assert_eq!(action_card.single_url.as_deref(), Some("https://hap/ok"));
        let many: Vec<(String, String)> = (0..20)
            .map(|i| {
                (
                    format!("按钮{i}"),
                    format!("https://hap.example.com/approve/{i:040}"),
                )
            })
            .chain([("长".into(), long_url)])
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(t, u)| (t.as_str(), u.as_str())).collect();
        let Msg::ActionCard { action_card } = msg_of(&shaped(MsgType::ActionCard, None, &refs))
        else {
            panic!()
        };
        let list = serde_json::to_string(&action_card.btn_json_list).unwrap();
        assert!(
            list.chars().count() <= MAX_BUTTON_LIST_CHARS,
            "{}",
            list.len()
        );
        assert!(action_card.btn_json_list.len() < 20 && !action_card.btn_json_list.is_empty());
        assert!(
            action_card
                .btn_json_list
                .iter()
                .all(|b| b.action_url.len() <= MAX_ACTION_URL_CHARS)
        );
        assert_eq!(action_card.btn_orientation.as_deref(), Some("0"));
        assert!(action_card.single_url.is_none());
    }

    #[test]
    fn everyone_and_departments_are_sends_without_userids_or_status_bars() {
        let route = |toml_text: &str| {
            per_user()
                .route_options(&toml::from_str(toml_text).unwrap(), Target::default())
                .unwrap()
        };
        let all = route("to_all_user = true");
        assert!(all.audience && !all.is_users());
        let p = per_user().plan(&todo(), &all, vec![]).unwrap();
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].recipients, ["@all"]);
        let send = &sends(&p)[0];
        assert!(send.to_all_user && send.userid_list.is_empty() && !send.msg.has_status_bar());
        let ids: Vec<String> = (0..25).map(|i| format!("\"{i}\"")).collect();
        let depts = route(&format!("departments = [{}]", ids.join(",")));
        let p = per_user().plan(&todo(), &depts, vec![]).unwrap();
        let lists: Vec<Option<String>> = sends(&p).into_iter().map(|s| s.dept_id_list).collect();
        assert_eq!(lists.len(), 2, "20 departments a call");
        assert_eq!(lists[1].as_deref(), Some("20,21,22,23,24"));
        assert!(sends(&p).iter().all(|s| !s.to_all_user));
    }

    #[test]
    fn routes_cannot_name_an_instance_or_a_group() {
        assert!(per_user().target(None, None).is_ok());
        let err = per_user().target(None, Some("g")).unwrap_err();
        assert!(
            err.to_string().contains("no `instance` or `group`"),
            "{err}"
        );
    }

    fn oa_with(message: &str) -> Msg {
        Msg::Oa {
            oa: Oa {
                message_url: "https://hap.example.com/x".into(),
                pc_message_url: None,
                head: OaHead {
                    bgcolor: "FFFF6A00".into(),
                    text: "采购".into(),
                },
                status_bar: Some(todo_open(&TodoStatus::default())),
                body: OaBody {
                    title: Some("待办".into()),
                    form: vec![
                        FormRow {
                            key: "应用：".into(),
                            value: "采购管理".into(),
                        },
                        FormRow {
                            key: "消息：".into(),
                            value: message.into(),
                        },
                    ],
                    content: Some("#8d3e6f".into()),
                    file_count: None,
                },
            },
        }
    }

    #[test]
    fn fit_shortens_the_message_to_2048_bytes_and_keeps_the_tag() {
        let mut small = oa_with("请审批");
        let before = small.clone();
        assert!(small.fit());
        assert_eq!(small, before, "a message that fits is untouched");

        let mut big = oa_with(&"审批\"引号\"\n".repeat(400));
        assert!(big.byte_len() > MAX_MSG_BYTES);
        assert!(big.fit());
        let len = big.byte_len();
        assert!(len <= MAX_MSG_BYTES && len > MAX_MSG_BYTES - 16, "{len}");
        let Msg::Oa { oa } = &big else { panic!() };
        assert!(oa.body.form[1].value.ends_with('…'));
        assert_eq!(oa.body.content.as_deref(), Some("#8d3e6f"));
    }

    #[test]
    fn msg_serializes_in_dingtalk_shape() {
        let v = serde_json::to_value(oa_with("x")).unwrap();
        assert_eq!(v["msgtype"], "oa");
        assert_eq!(v["oa"]["status_bar"]["status_bg"], "0xFFFF9D46");
        let md = Msg::Markdown {
            markdown: Markdown {
                title: "t".into(),
                text: "x".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(md).unwrap(),
            json!({"msgtype":"markdown","markdown":{"title":"t","text":"x"}})
        );
    }
}
