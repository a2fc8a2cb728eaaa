//! The notice: what a source's event says, in terms every connector can render. Sources build
//! it from their payloads (`sources/<s>.rs`); connectors turn it into their requests
//! (`connectors/<c>/render.rs`); neither knows the other's fields.

use chrono::TimeZone;
use serde_json::Value;

use crate::event::{Millis, beijing};

/// What the reader is asked to do with a notice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Intent {
    /// Read it.
    #[default]
    Message,
    /// Act on it: the source's to-do `id`, which a later `Finish` names; `status` how its
    /// state reads.
    Todo { id: String, status: TodoStatus },
    /// The to-do `todo_id` was finished. `todo_event` is the stored event that sent it (where
    /// its deliveries are), `todo_kind` that event's kind (routes for it take its finish too).
    Finish {
        todo_id: String,
        todo_event: String,
        todo_kind: &'static str,
        status: TodoStatus,
    },
    /// What `connector`'s system reports about a message hookbridge sent through it
    /// (`reference` is that connector's id for the send, e.g. 浙政钉's `bizMsgId`). It goes back
    /// to that connector whatever the routes say; routes deliver it only if they name its kind.
    Receipt {
        connector: &'static str,
        reference: String,
        report: Report,
    },
    /// Take back what the event `of` (a stored event key) sent through the route's connector;
    /// the notice's recipients narrow it to what they were sent, when they were sent any.
    Revoke { of: String },
    /// These ids changed in `connector`'s system (浙政钉 contacts: employees), so whatever it
    /// looked up about them may be stale. It goes back to that connector like a receipt.
    Changed {
        connector: &'static str,
        ids: Vec<String>,
    },
}

/// How a to-do's state reads while it is open and once it is done, in the source's words (a
/// DingTalk card's status bar shows them), and in English for routes that read English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoStatus {
    pub open: String,
    pub done: String,
    pub open_en: String,
    pub done_en: String,
}

impl Default for TodoStatus {
    /// A task for someone: 待处理, then 已处理.
    fn default() -> Self {
        TodoStatus {
            open: "待处理".into(),
            done: "已处理".into(),
            open_en: "Pending".into(),
            done_en: "Done".into(),
        }
    }
}

/// The language a route's messages read in: its built-in template, a to-do's state and the
/// labels a connector adds (DingTalk's 应用/消息/时间, 查看详情).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Chinese, the default.
    #[default]
    Zh,
    En,
}

impl Language {
    /// `zh` or `en`, whichever this language is.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Language::Zh => zh,
            Language::En => en,
        }
    }
}

/// What a system reported about one message hookbridge sent through it, in its own words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What became of it (浙政钉: `read`, `pushed`, `failed`, `revoked`, `sent`).
    pub status: String,
    /// Whom it concerns, as that system names them.
    pub concerns: Vec<String>,
    /// What that system calls the message's type and the app that sent it, where it says
    /// (浙政钉 `msgType`, `msgApp`: taking the message back needs them).
    pub message_type: String,
    pub app: String,
}

/// How a route's template asks a notice to be shown, where the connector has the choice
/// (DingTalk work notices); a connector without that choice ignores it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    Text,
    Markdown,
    /// Title, text, picture, one link.
    Link,
    /// A Markdown card with one link or a list of buttons.
    ActionCard,
    /// An OA card (form rows, a status bar for a to-do).
    Oa,
    /// A robot's list of linked items, here one (work notices show it as a link).
    FeedCard,
}

impl Intent {
    /// The same intent with a to-do's state in `language`.
    pub fn in_language(mut self, language: Language) -> Intent {
        if language == Language::En
            && let Intent::Todo { status, .. } | Intent::Finish { status, .. } = &mut self
        {
            status.open = std::mem::take(&mut status.open_en);
            status.done = std::mem::take(&mut status.done_en);
        }
        self
    }

    /// A finish turned into taking back the to-do it finishes; anything else as it is.
    pub fn revoked(self) -> Intent {
        match self {
            Intent::Finish { todo_event, .. } => Intent::Revoke { of: todo_event },
            other => other,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notice {
    /// The source as readers know it (`HAP`, `DMS`).
    pub from: &'static str,
    pub intent: Intent,
    /// The source's ids of who should read it; routing maps them to each connector's users.
    pub recipients: Vec<String>,
    /// The ids are never a connector's own (Alibaba Cloud UIDs): without a mapping they are
    /// dropped (and reported), whatever the recipient map's mode.
    pub foreign_ids: bool,
    /// Those of `recipients` that have the shape of the source's own account ids (HAP's GUIDs),
    /// which no connector knows: said in the log when they go out unmapped.
    pub own_accounts: Vec<String>,
    /// Only routes that name its kind deliver it: bookkeeping (a read receipt), or another view
    /// of what other events already carry (an Alertmanager group).
    pub quiet: bool,
    /// What templates see: the event's fields by name, with `tag` and `time`.
    pub fields: Value,
    /// The app or module the event is about (HAP's app name), if any.
    pub app: Option<String>,
    /// Title and body, rendered from `fields` by the route's template (values Markdown-escaped
    /// when the connector shows Markdown); empty until routing renders them.
    pub title: String,
    pub text: String,
    /// Stable per event, unique between events (see [`tag`]).
    pub tag: String,
    /// When it happened, as readers should see it.
    pub time: Millis,
    pub link: Option<String>,
    /// `(name, link)` of images to show.
    pub images: Vec<(String, String)>,
    /// Further lines: attachments, task, submitter.
    pub details: Vec<String>,
    /// How many files come with it.
    pub attachments: usize,
    /// The shape the route's template chose; `None`: the connector's default for the intent.
    pub msgtype: Option<MsgType>,
    /// `(title, url)` of the buttons the template rendered (DingTalk action cards).
    pub buttons: Vec<(String, String)>,
    /// A picture the template names (DingTalk link messages: a URL or a `media_id`).
    pub image: Option<String>,
    /// The route's language, for the labels a connector adds.
    pub language: Language,
}

impl Notice {
    /// A notice tagged from the event id `id`, dated `time`, with `fields` for templates (which
    /// get `tag` and `time` too); the source fills in the rest.
    pub fn new(
        from: &'static str,
        intent: Intent,
        id: &str,
        time: Millis,
        mut fields: Value,
    ) -> Self {
        let tag = tag(id);
        if let Some(o) = fields.as_object_mut() {
            o.insert("tag".into(), Value::from(tag.as_str()));
            o.insert("time".into(), Value::from(local_time(time)));
        }
        Notice {
            from,
            intent,
            fields,
            tag,
            time,
            ..Notice::default()
        }
    }
}

/// Short, stable tag from the event id: the same event renders the same content (a retry is a
/// harmless duplicate), different events differ (DingTalk drops same-content-same-day repeats).
pub fn tag(id: &str) -> String {
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    format!("#{short}")
}

/// Beijing time, as the people reading the notification see it.
pub fn local_time(at: Millis) -> String {
    beijing()
        .timestamp_millis_opt(at)
        .single()
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M").to_string())
}
