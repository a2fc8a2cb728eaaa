//! The bodies hookbridge posts to ZenTao: `sendNotification` (to users) and `sendChatMessage`
//! (to a group chat). Pure data, rendered at ingress from config alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ZenTaoInstance;
use super::api::Method;
use crate::notice::Notice;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZenTaoAction {
    pub label: String,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    pub id: String,
    pub name: String,
    /// xxd reads `displayName`, ZenTao `name`: both are sent.
    pub display_name: String,
    pub avatar: String,
}

/// The JSON body of `sendNotification` (with `users`) or `sendChatMessage` (with `gid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZenTaoNotice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitle: Option<String>,
    pub content: String,
    /// `text` is Markdown, `plain` is plain text.
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ZenTaoAction>,
    pub sender: Sender,
}

/// What a `zentao` delivery carries: which instance, and the body to post there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZenTaoMessage {
    pub instance: String,
    pub notice: ZenTaoNotice,
}

impl ZenTaoMessage {
    pub fn method(&self) -> Method {
        if self.notice.gid.is_some() {
            Method::SendChatMessage
        } else {
            Method::SendNotification
        }
    }
}

/// The ZenTao notification for a notice: to `gid`'s group or to `users`, as plain text or
/// Markdown (then `c` was rendered with the event's values escaped).
pub fn notice(
    z: &ZenTaoInstance,
    c: &Notice,
    gid: Option<String>,
    users: Vec<Value>,
    todo: bool,
    markdown: bool,
) -> ZenTaoNotice {
    let mut content = vec![format!("{} {}", c.text, c.tag)];
    content.extend(c.details.iter().cloned());
    let actions = match (&c.link, todo) {
        (Some(url), true) => vec![ZenTaoAction {
            label: "去处理".into(),
            url: url.clone(),
            kind: "primary".into(),
        }],
        _ => vec![],
    };
    ZenTaoNotice {
        users: gid.is_none().then_some(users),
        gid,
        title: c.title.clone(),
        subtitle: None,
        content: content.join(if markdown { "  \n" } else { "\n" }),
        content_type: if markdown { "text" } else { "plain" }.into(),
        url: c.link.clone(),
        actions,
        sender: Sender {
            id: z.sender.id.clone(),
            name: z.sender.name.clone(),
            display_name: z.sender.name.clone(),
            avatar: z.sender.avatar.clone(),
        },
    }
}
