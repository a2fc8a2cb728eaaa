//! The bodies hookbridge posts to ZenTao: `sendNotification` (to users) and `sendChatMessage`
//! (to a group chat). Pure data, rendered at ingress from config alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::Method;

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
pub struct Notice {
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
    pub notice: Notice,
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
