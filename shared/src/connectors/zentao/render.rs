//! The bodies hookbridge posts to ZenTao: `sendNotification` (to users) and `sendChatMessage`
//! (to a group chat). Pure data, rendered at ingress from config alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::Method;
use super::{CONNECTOR, ContentFormat, UsersBy, ZenTaoInstance};
use crate::connectors::{BadTarget, Call, Plan, Render, RenderError, Target, named_instance};
use crate::event::Action;
use crate::notice::{Intent, Notice};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZenTaoAction {
    pub label: String,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSender {
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
    pub sender: MessageSender,
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

/// The ZenTao instances' settings, by name: all rendering needs.
#[derive(Debug, Clone)]
pub struct ZenTaoRender {
    pub instances: BTreeMap<String, ZenTaoInstance>,
}

impl ZenTaoRender {
    fn instance(&self, target: &Target) -> Option<(&String, &ZenTaoInstance)> {
        self.instances.get_key_value(target.instance.as_deref()?)
    }
}

impl Render for ZenTaoRender {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    /// The instance a route names, or the only one there is.
    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        let name = named_instance(instance, self.instances.keys(), "the ZenTao instances")?;
        Ok(Target {
            instance: Some(name),
            group: group.map(str::to_owned),
            ..Target::default()
        })
    }

    fn markdown(&self, _: &Notice, target: &Target) -> bool {
        self.instance(target)
            .is_some_and(|(_, z)| z.content == ContentFormat::Markdown)
    }

    /// One call: to the route's group chat, or to the users. ZenTao cannot change a
    /// notification it showed, so a finished to-do sends nothing.
    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        let Some((instance, settings)) = self.instance(target) else {
            return Ok(Plan::default());
        };
        if matches!(n.intent, Intent::Finish { .. }) {
            return Ok(Plan::default());
        }
        // ZenTao picks accounts or ids by the first entry: every entry must be of one kind.
        let mut unmapped = vec![];
        let users: Vec<Value> = match settings.users_by {
            UsersBy::Account => users.into_iter().map(Value::String).collect(),
            UsersBy::Id => users
                .into_iter()
                .filter_map(|u| match u.parse::<u64>() {
                    Ok(id) => Some(Value::from(id)),
                    Err(_) => {
                        unmapped.push(u);
                        None
                    }
                })
                .collect(),
        };
        let mut calls = vec![];
        if target.group.is_some() || !users.is_empty() {
            let recipients: Vec<String> = match &target.group {
                Some(gid) => vec![format!("group:{gid}")],
                None => users
                    .iter()
                    .map(|u| u.as_str().map_or_else(|| u.to_string(), str::to_owned))
                    .collect(),
            };
            let todo = matches!(n.intent, Intent::Todo { .. });
            let markdown = settings.content == ContentFormat::Markdown;
            let message = ZenTaoMessage {
                instance: instance.clone(),
                notice: notice(settings, n, target.group.clone(), users, todo, markdown),
            };
            calls.push(Call {
                action: Action::Send,
                recipients,
                message: serde_json::to_value(message)?,
            });
        }
        Ok(Plan { calls, unmapped })
    }
}

/// The ZenTao notification for a notice: to `gid`'s group or to `users`, as plain text or
/// Markdown (then `c` was rendered with the event's values escaped).
fn notice(
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
        sender: MessageSender {
            id: z.sender.id.clone(),
            name: z.sender.name.clone(),
            display_name: z.sender.name.clone(),
            avatar: z.sender.avatar.clone(),
        },
    }
}
