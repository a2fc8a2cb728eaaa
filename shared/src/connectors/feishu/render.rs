//! Feishu app message bodies (`im/v1/messages`): a card (`interactive`, shared so it can be
//! updated: `update_multi`) for every notice, its header orange for a to-do and its note
//! reading 待处理, green and 已处理 once done; `text` when the route's template asks. One
//! message per recipient (Feishu's send takes one `receive_id`), or one to the route's group
//! chat. Every text is `plain_text`: values go out as they are. Pure: no secrets (the `uuid`
//! that makes a resend one message is added when sending, from the delivery's key).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::CONNECTOR;
use crate::connectors::{BadTarget, Call, Plan, Render, RenderError, Target, route_options};
use crate::event::{Action, Millis};
use crate::notice::{Intent, MsgType, Notice, TodoStatus, local_time};

/// The own action that turns a to-do's cards once it is done.
pub const UPDATE_CARD: &str = "update_card";
/// How long Feishu lets a sent card change: 14 days.
pub const CARD_WINDOW: Millis = 14 * 24 * 3600 * 1000;

/// How the route's recipients are named to Feishu.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdType {
    #[default]
    OpenId,
    UserId,
    UnionId,
    Email,
}

impl IdType {
    fn as_str(self) -> &'static str {
        match self {
            IdType::OpenId => "open_id",
            IdType::UserId => "user_id",
            IdType::UnionId => "union_id",
            IdType::Email => "email",
        }
    }
}

/// A route's keys for Feishu.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuRoute {
    /// When the to-do is done, recall its cards instead of marking them done.
    #[serde(default)]
    pub recall_on_finish: bool,
}

/// One message as it will be sent: `receive_id_type` goes in the query, `body` as the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Send {
    pub receive_id_type: String,
    pub body: Value,
}

/// What turns a to-do's cards: the event that sent them and the status words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardUpdate {
    pub event: String,
    pub open: String,
    pub done: String,
}

#[derive(Debug, Clone)]
pub struct Style {
    pub id_type: IdType,
}

/// A card for `n`, its header's colour and its note's status saying `state`.
pub fn card(n: &Notice, state: Option<(&str, bool)>) -> Value {
    let details = n.language.pick("查看详情", "Details");
    let time = format!("{} {}", local_time(n.time), n.tag);
    let (template, note) = match state {
        Some((word, done)) => (
            if done { "green" } else { "orange" },
            format!("{word}｜{time}"),
        ),
        None => ("blue", time),
    };
    let plain = |s: &str| json!({ "tag": "plain_text", "content": s });
    let mut elements = vec![json!({ "tag": "div", "text": plain(&n.text) })];
    elements.extend(
        n.details
            .iter()
            .map(|d| json!({ "tag": "div", "text": plain(d) })),
    );
    if let Some(url) = &n.link {
        elements.push(json!({ "tag": "action", "actions": [{
            "tag": "button", "type": "primary", "text": plain(details), "url": url,
        }]}));
    }
    elements.push(json!({ "tag": "note", "elements": [plain(&note)] }));
    json!({
        "config": { "wide_screen_mode": true, "update_multi": true },
        "header": { "title": plain(&n.title), "template": template },
        "elements": elements,
    })
}

/// A sent card with its state turned to `done`: the header green, the note's first word.
pub fn turned(card: &Value, update: &CardUpdate) -> Value {
    let mut card = card.clone();
    card["header"]["template"] = json!("green");
    if let Some(elements) = card["elements"].as_array_mut()
        && let Some(note) = elements.iter_mut().rev().find(|e| e["tag"] == "note")
        && let Some(text) = note["elements"][0]["content"].as_str()
    {
        let rest = text.strip_prefix(update.open.as_str()).unwrap_or(text);
        note["elements"][0]["content"] = json!(format!("{}{rest}", update.done));
    }
    card
}

impl Render for Style {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    /// People, or the route's group chat (`group = "oc_…"`).
    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        if instance.is_some() {
            return Err(BadTarget(
                "a feishu route takes no instance: one app sends".into(),
            ));
        }
        Ok(Target {
            group: group.map(str::to_owned),
            ..Target::default()
        })
    }

    fn route_options(&self, options: &toml::Table, target: Target) -> Result<Target, BadTarget> {
        let route: FeishuRoute = route_options(CONNECTOR, options)?;
        Ok(Target {
            revoke_on_finish: route.recall_on_finish,
            ..target
        })
    }

    fn markdown(&self, _: &Notice, _: &Target) -> bool {
        false
    }

    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        let calls = match &n.intent {
            Intent::Finish {
                todo_event, status, ..
            } => {
                let TodoStatus { open, done, .. } = status.clone();
                let update = CardUpdate {
                    event: todo_event.clone(),
                    open,
                    done,
                };
                vec![Call {
                    action: Action::Own(UPDATE_CARD.into()),
                    recipients: users,
                    message: serde_json::to_value(update)?,
                }]
            }
            Intent::Revoke { of } => vec![Call {
                action: Action::Revoke,
                recipients: users,
                message: json!({ "event": of }),
            }],
            Intent::Message | Intent::Todo { .. } => {
                let (msg_type, content) = if n.msgtype == Some(MsgType::Text) {
                    let mut lines = vec![format!("【{}】{}", n.title, n.tag), n.text.clone()];
                    lines.extend(n.details.iter().cloned());
                    lines.extend(n.link.clone());
                    lines.push(local_time(n.time));
                    ("text", json!({ "text": lines.join("\n") }))
                } else {
                    let state = match &n.intent {
                        Intent::Todo { status, .. } => Some((status.open.as_str(), false)),
                        _ => None,
                    };
                    ("interactive", card(n, state))
                };
                let send = |id_type: &str, id: &str| -> Result<Value, serde_json::Error> {
                    serde_json::to_value(Send {
                        receive_id_type: id_type.to_owned(),
                        body: json!({
                            "receive_id": id,
                            "msg_type": msg_type,
                            "content": content.to_string(),
                        }),
                    })
                };
                match &target.group {
                    Some(chat) => vec![Call {
                        action: Action::Send,
                        recipients: vec![format!("chat:{chat}")],
                        message: send("chat_id", chat)?,
                    }],
                    None => users
                        .into_iter()
                        .map(|u| {
                            Ok(Call {
                                action: Action::Send,
                                message: send(self.id_type.as_str(), &u)?,
                                recipients: vec![u],
                            })
                        })
                        .collect::<Result<_, serde_json::Error>>()?,
                }
            }
            Intent::Receipt { .. } | Intent::Changed { .. } => vec![],
        };
        Ok(Plan {
            calls,
            unmapped: vec![],
        })
    }

    fn recipient_noun(&self) -> &'static str {
        "Feishu id"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(intent: Intent) -> Notice {
        Notice {
            title: "待办｜采购管理".into(),
            text: "请审批 **采购单**".into(),
            link: Some("https://hap/r".into()),
            ..Notice::new("HAP", intent, "m1", 1_715_495_400_000, json!({}))
        }
    }

    fn todo() -> Intent {
        Intent::Todo {
            id: "m1".into(),
            status: TodoStatus::default(),
        }
    }

    fn plan(n: &Notice, group: Option<&str>, users: &[&str]) -> Plan {
        let s = Style {
            id_type: IdType::OpenId,
        };
        let target = s.target(None, group).unwrap();
        s.plan(n, &target, users.iter().map(|u| (*u).to_owned()).collect())
            .unwrap()
    }

    #[test]
    fn a_todo_is_a_shared_card_per_person_and_values_stay_plain() {
        let p = plan(&notice(todo()), None, &["ou_1", "ou_2"]);
        assert_eq!(p.calls.len(), 2, "one message a person");
        let send: Send = serde_json::from_value(p.calls[1].message.clone()).unwrap();
        assert_eq!(
            (send.receive_id_type.as_str(), &send.body["receive_id"]),
            ("open_id", &json!("ou_2"))
        );
        let card: Value = serde_json::from_str(send.body["content"].as_str().unwrap()).unwrap();
        assert_eq!(card["config"]["update_multi"], true);
        assert_eq!(card["header"]["template"], "orange");
        assert_eq!(card["elements"][0]["text"]["content"], "请审批 **采购单**");
        let note = card["elements"].as_array().unwrap().last().unwrap();
        assert!(
            note["elements"][0]["content"]
                .as_str()
                .unwrap()
                .starts_with("待处理｜")
        );
    }

    #[test]
    fn a_finished_card_turns_green_and_reads_done() {
        let c = card(&notice(todo()), Some(("待处理", false)));
        let update = CardUpdate {
            event: "EVT#hap#m1".into(),
            open: "待处理".into(),
            done: "已处理".into(),
        };
        let t = turned(&c, &update);
        assert_eq!(t["header"]["template"], "green");
        let note =
            t["elements"].as_array().unwrap().last().unwrap()["elements"][0]["content"].clone();
        assert!(
            note.as_str()
                .unwrap()
                .starts_with("已处理｜2024-05-12 14:30"),
            "{note}"
        );
        assert_eq!(
            t["config"]["update_multi"], true,
            "still shared after the update"
        );
    }

    #[test]
    fn a_group_route_sends_one_message_to_the_chat() {
        let p = plan(&notice(Intent::Message), Some("oc_9"), &["ou_1"]);
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].message["receive_id_type"], "chat_id");
        assert_eq!(p.calls[0].recipients, ["chat:oc_9"]);
    }
}
