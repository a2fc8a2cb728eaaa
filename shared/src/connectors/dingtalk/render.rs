//! DingTalk work-notification bodies (`asyncsend_v2`, OA cards, markdown, text) and the rules
//! that make them valid by construction: `msg` ≤ 2048 bytes, ≤ 100 userids a call, status bars
//! only for ≤ 5. Pure: no I/O, no secrets, so a webhook function can render without any.
//! A [`Notice`] becomes an OA to-do card ([`todo_card`]) or a markdown or text notice ([`notice`]),
//! or what its route's template asks for (`msgtype`: text, markdown, link, action_card, oa).

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{CONNECTOR, DingTalkConfig, DingTalkRoute, NoticeFormat, TodoFanout};
use crate::connectors::{BadTarget, Call, Plan, Render, Target, route_options};
use crate::event::{Action, MAX_DELIVERIES};
use crate::notice::{Intent, MsgType, Notice, local_time};

/// `msg` must serialize to at most this many bytes.
pub const MAX_MSG_BYTES: usize = 2048;
/// `userid_list` entries per call.
pub const MAX_USERIDS: usize = 100;
/// Where a stored send keeps its route's follow-up (taken out before the request goes out).
pub const FOLLOW_UP_KEY: &str = "follow_up";
/// The OA status bar only shows when a send has at most this many userids.
pub const MAX_STATUS_BAR_USERS: usize = 5;
/// `dept_id_list` entries per call.
pub const MAX_DEPARTMENTS: usize = 20;
/// Action-card limits: button titles, `single_url`, each `action_url`, the whole button list.
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;
pub const MAX_SINGLE_URL_CHARS: usize = 500;
pub const MAX_ACTION_URL_CHARS: usize = 700;
pub const MAX_BUTTON_LIST_CHARS: usize = 1000;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
pub enum Msg {
    Oa { oa: Oa },
    Markdown { markdown: Markdown },
    Text { text: Text },
    Link { link: Link },
    ActionCard { action_card: ActionCard },
}

/// A link message: DingTalk wants all four fields, in camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub message_url: String,
    pub pic_url: String,
    pub title: String,
    pub text: String,
}

/// A Markdown card with one link for the whole card, or a list of buttons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionCard {
    pub title: String,
    pub markdown: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btn_orientation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub btn_json_list: Vec<Button>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    pub title: String,
    pub action_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Oa {
    pub message_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pc_message_url: Option<String>,
    pub head: OaHead,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_bar: Option<StatusBar>,
    pub body: OaBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OaHead {
    pub bgcolor: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusBar {
    pub status_value: String,
    pub status_bg: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OaBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form: Vec<FormRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormRow {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Markdown {
    pub title: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub content: String,
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

impl Msg {
    pub fn byte_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// The text that may be shortened to fit: the OA form row holding the message (or the
    /// content), the markdown text, the text content. Unique tags are kept elsewhere or in
    /// front, so cutting the tail keeps them.
    fn long_text(&mut self) -> Option<&mut String> {
        match self {
            Msg::Oa { oa } => match oa.body.form.iter_mut().max_by_key(|r| r.value.len()) {
                Some(row) => Some(&mut row.value),
                None => oa.body.content.as_mut(),
            },
            Msg::Markdown { markdown } => Some(&mut markdown.text),
            Msg::Text { text } => Some(&mut text.content),
            Msg::Link { link } => Some(&mut link.text),
            Msg::ActionCard { action_card } => Some(&mut action_card.markdown),
        }
    }

    /// Shortens the long text (ending it with `…`) until the message fits in `MAX_MSG_BYTES`.
    /// Returns whether it fits.
    pub fn fit(&mut self) -> bool {
        if self.byte_len() <= MAX_MSG_BYTES {
            return true;
        }
        let Some(original) = self.long_text().map(|t| t.clone()) else {
            return false;
        };
        let chars: Vec<char> = original.chars().collect();
        let set = |msg: &mut Msg, keep: usize| {
            if let Some(t) = msg.long_text() {
                *t = chars[..keep].iter().collect::<String>() + "…";
            }
        };
        // Largest prefix that fits, by binary search over the number of chars kept.
        let (mut lo, mut hi) = (0usize, chars.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            set(self, mid);
            if self.byte_len() <= MAX_MSG_BYTES {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        set(self, lo);
        self.byte_len() <= MAX_MSG_BYTES
    }

    pub fn has_status_bar(&self) -> bool {
        matches!(self, Msg::Oa { oa } if oa.status_bar.is_some())
    }
}

/// Statuses the to-do lifecycle uses (colours from the vendor page).
pub fn todo_open() -> StatusBar {
    StatusBar {
        status_value: "待处理".into(),
        status_bg: "0xFFFF9D46".into(),
    }
}

pub fn todo_done() -> StatusBar {
    StatusBar {
        status_value: "已处理".into(),
        status_bg: "0xFF78C06E".into(),
    }
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

    /// A to-do: OA cards with a status bar ([`todo_groups`]); its finish: one status update of
    /// those cards; anything else: notices to at most 100 users each.
    fn plan(
        &self,
        n: &Notice,
        target: &Target,
        users: Vec<String>,
    ) -> Result<Plan, serde_json::Error> {
        let kind = self.kind(n);
        let route = match &target.options {
            serde_json::Value::Null => DingTalkRoute::default(),
            o => DingTalkRoute::deserialize(o)?,
        };
        let sends: Vec<(Vec<String>, AsyncSend)> = match (&n.intent, kind) {
            (Intent::Finish { todo_event, .. }, _) => {
                let done = todo_done();
                let update = StatusUpdate {
                    event: todo_event.clone(),
                    user: users.last().cloned(),
                    status_value: done.status_value,
                    status_bg: done.status_bg,
                };
                let message = serde_json::to_value(update)?;
                let call = Call {
                    action: Action::UpdateStatus,
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
            (Intent::Todo { .. }, MsgType::Oa) if self.card_url(n).is_some() => {
                todo_groups(&users, self.fanout, MAX_DELIVERIES)
                    .into_iter()
                    .map(|g| {
                        let bar = (g.len() <= MAX_STATUS_BAR_USERS).then(todo_open);
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

fn pc_link(url: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    format!("dingtalk://dingtalkclient/page/link?url={encoded}&pc_slide=false")
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

/// An OA card for a notice: app, message and time as form rows, the tag in the content, the
/// link for mobile and PC (the work-notification shape 浙政钉 shares).
pub(crate) fn card_msg(n: &Notice, url: &str, status_bar: Option<StatusBar>) -> Msg {
    let mut form = vec![];
    if let Some(app) = &n.app {
        form.push(FormRow {
            key: "应用：".into(),
            value: app.clone(),
        });
    }
    form.push(FormRow {
        key: "消息：".into(),
        value: n.text.clone(),
    });
    form.push(FormRow {
        key: "时间：".into(),
        value: local_time(n.time),
    });
    let content = match n.details.first() {
        Some(line) => format!("{line} {}", n.tag),
        None => n.tag.clone(),
    };
    let mut msg = Msg::Oa {
        oa: Oa {
            message_url: url.to_owned(),
            pc_message_url: Some(pc_link(url)),
            head: OaHead {
                bgcolor: "FFFF6A00".into(),
                text: n.app.clone().unwrap_or_else(|| n.from.to_owned()),
            },
            status_bar,
            body: OaBody {
                title: Some(n.title.clone()),
                form,
                content: Some(content),
                file_count: (n.attachments > 0).then(|| n.attachments.to_string()),
            },
        },
    };
    if !msg.fit() {
        warn!(tag = %n.tag, "card does not fit in 2048 bytes even with the message cut");
    }
    msg
}

/// The Markdown body of a notice: heading with the tag, text, images, details, the link (when
/// `with_link`: an action card has its own), the time.
fn markdown_text(c: &Notice, with_link: bool) -> String {
    let mut lines = vec![
        format!("#### {} {}", c.title, c.tag),
        c.text.lines().collect::<Vec<_>>().join("  \n  "),
    ];
    lines.extend(
        c.images
            .iter()
            .map(|(name, link)| format!("![{name}]({link})")),
    );
    lines.extend(c.details.iter().cloned());
    if with_link {
        lines.extend(c.link.as_ref().map(|url| format!("[查看详情]({url})")));
    }
    lines.push(format!("###### {}", local_time(c.time)));
    lines.join("  \n  ")
}

/// A link message: the tag ends the title (the text may be cut to fit, the title is not).
pub(crate) fn link_msg(c: &Notice, url: String, pic: &str) -> Msg {
    let mut msg = Msg::Link {
        link: Link {
            message_url: url,
            pic_url: pic.to_owned(),
            title: format!("{} {}", c.title, c.tag),
            text: c.text.clone(),
        },
    };
    if !msg.fit() {
        warn!(tag = %c.tag, "link message does not fit in 2048 bytes even with the text cut");
    }
    msg
}

/// An action card: the template's buttons (titles cut to 20 characters; a button whose URL is
/// too long, or that would take the list past 1 000 characters, left out), one button or the
/// notice's link as the whole-card link. `None` without any link.
pub(crate) fn action_card_msg(c: &Notice, url: Option<String>) -> Option<Msg> {
    let mut buttons: Vec<Button> = c
        .buttons
        .iter()
        .filter(|(_, u)| u.chars().count() <= MAX_ACTION_URL_CHARS)
        .map(|(t, u)| Button {
            title: t.chars().take(MAX_BUTTON_TITLE_CHARS).collect(),
            action_url: u.clone(),
        })
        .collect();
    let list_chars =
        |b: &[Button]| serde_json::to_string(b).map_or(usize::MAX, |s| s.chars().count());
    while list_chars(&buttons) > MAX_BUTTON_LIST_CHARS {
        buttons.pop();
    }
    if buttons.len() < c.buttons.len() {
        warn!(tag = %c.tag, kept = buttons.len(), of = c.buttons.len(), "action-card buttons left out for DingTalk's limits");
    }
    let single = match buttons.as_slice() {
        [] => url.map(|u| ("查看详情".to_owned(), u)),
        [one] => Some((one.title.clone(), one.action_url.clone())),
        _ => None,
    }
    .filter(|(_, u)| u.chars().count() <= MAX_SINGLE_URL_CHARS);
    let mut card = ActionCard {
        title: c.title.clone(),
        markdown: markdown_text(c, false),
        single_title: None,
        single_url: None,
        btn_orientation: None,
        btn_json_list: vec![],
    };
    match single {
        Some((title, url)) => (card.single_title, card.single_url) = (Some(title), Some(url)),
        None if !buttons.is_empty() => {
            card.btn_orientation = Some("0".into());
            card.btn_json_list = buttons;
        }
        None => return None,
    }
    let mut msg = Msg::ActionCard { action_card: card };
    if !msg.fit() {
        warn!(tag = %c.tag, "action card does not fit in 2048 bytes even with the text cut");
    }
    Some(msg)
}

/// Anything that is not a to-do: a markdown (or plain text) notification. The tag goes first
/// so that shortening the tail cannot cut it.
pub(crate) fn notice_msg(format: NoticeFormat, c: &Notice) -> Msg {
    let mut msg = match format {
        NoticeFormat::Markdown => Msg::Markdown {
            markdown: Markdown {
                title: c.title.clone(),
                text: markdown_text(c, true),
            },
        },
        NoticeFormat::Text => {
            let mut lines = vec![format!("【{}】{}", c.title, c.tag), c.text.clone()];
            lines.extend(c.details.iter().cloned());
            lines.extend(c.link.as_ref().map(|url| format!("查看详情：{url}")));
            lines.push(local_time(c.time));
            Msg::Text {
                text: Text {
                    content: lines.join("\n"),
                },
            }
        }
    };
    if !msg.fit() {
        warn!(tag = %c.tag, "notice does not fit in 2048 bytes even with the text cut");
    }
    msg
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
        let n = notice(Intent::Todo { id: "t".into() }, None);
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
            },
            None,
        );
        let p = per_user()
            .plan(&n, &Target::default(), vec!["ding9".into()])
            .unwrap();
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].action, Action::UpdateStatus);
        let u: StatusUpdate = serde_json::from_value(p.calls[0].message.clone()).unwrap();
        assert_eq!(
            (u.event.as_str(), u.user.as_deref(), u.status_value.as_str()),
            ("EVT#hap#m1", Some("ding9"), "已处理")
        );
        let everyone = per_user().plan(&n, &Target::default(), vec![]).unwrap();
        let u: StatusUpdate = serde_json::from_value(everyone.calls[0].message.clone()).unwrap();
        assert_eq!(u.user, None);
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
                status_bar: Some(todo_open()),
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
