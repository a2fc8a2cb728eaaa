//! DingTalk's `msg` object, which three connectors carry: work notifications
//! (`connectors/dingtalk`), group robots (`connectors/dingtalk_robot`) and 浙政钉, DingTalk's
//! government edition (`connectors/govding`). The message types, the 2048-byte limit every one
//! of them keeps, and a notice shown as each type. Pure: no I/O. Each connector wraps these in
//! its own request.

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::notice::{Notice, TodoStatus, local_time};

/// How notices that are not to-dos read, where a connector lets the config choose.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeFormat {
    #[default]
    Markdown,
    Text,
}

/// `msg` must serialize to at most this many bytes.
pub const MAX_MSG_BYTES: usize = 2048;

/// Action-card limits: button titles, `single_url`, each `action_url`, the whole button list.
pub const MAX_BUTTON_TITLE_CHARS: usize = 20;
pub const MAX_SINGLE_URL_CHARS: usize = 500;
pub const MAX_ACTION_URL_CHARS: usize = 700;
pub const MAX_BUTTON_LIST_CHARS: usize = 1000;

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

/// A to-do's status bar while it is open (orange) and once done (green), with the source's
/// words (colours from the vendor page).
pub fn todo_open(status: &TodoStatus) -> StatusBar {
    StatusBar {
        status_value: status.open.clone(),
        status_bg: "0xFFFF9D46".into(),
    }
}

pub fn todo_done(status: &TodoStatus) -> StatusBar {
    StatusBar {
        status_value: status.done.clone(),
        status_bg: "0xFF78C06E".into(),
    }
}

fn pc_link(url: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    format!("dingtalk://dingtalkclient/page/link?url={encoded}&pc_slide=false")
}

/// An OA card for a notice: app, message and time as form rows, the tag in the content, the
/// link for mobile and PC (the work-notification shape 浙政钉 shares).
pub fn card_msg(n: &Notice, url: &str, status_bar: Option<StatusBar>) -> Msg {
    let mut form = vec![];
    if let Some(app) = &n.app {
        form.push(FormRow {
            key: n.language.pick("应用：", "App: ").into(),
            value: app.clone(),
        });
    }
    form.push(FormRow {
        key: n.language.pick("消息：", "Message: ").into(),
        value: n.text.clone(),
    });
    form.push(FormRow {
        key: n.language.pick("时间：", "Time: ").into(),
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
        let details = c.language.pick("查看详情", "Details");
        lines.extend(c.link.as_ref().map(|url| format!("[{details}]({url})")));
    }
    lines.push(format!("###### {}", local_time(c.time)));
    lines.join("  \n  ")
}

/// A link message: the tag ends the title (the text may be cut to fit, the title is not).
pub fn link_msg(c: &Notice, url: String, pic: &str) -> Msg {
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
pub fn action_card_msg(c: &Notice, url: Option<String>) -> Option<Msg> {
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
        [] => url.map(|u| (c.language.pick("查看详情", "Details").to_owned(), u)),
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
pub fn notice_msg(format: NoticeFormat, c: &Notice) -> Msg {
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
            let details = c.language.pick("查看详情：", "Details: ");
            lines.extend(c.link.as_ref().map(|url| format!("{details}{url}")));
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
