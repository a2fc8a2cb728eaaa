//! WeCom app message bodies (`message/send`): a to-do is a `button_interaction` template card
//! (the only kind, with votes, whose send returns the `response_code` that later changes it),
//! a notice with a link a `textcard`, otherwise `text`; a template may ask for `text` or
//! `markdown`. Users are `|`-joined in `touser`, 1,000 a call; departments, tags or everyone
//! only when the route says so. Every send asks WeCom's duplicate check, so a send retried
//! after a lost answer shows once. Pure: no secrets.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::CONNECTOR;
use crate::connectors::robots::fit;
use crate::connectors::{BadTarget, Call, Plan, Render, RenderError, Target, route_options};
use crate::event::{Action, Millis};
use crate::notice::{Intent, MsgType, Notice, local_time};

/// The own action that changes a to-do's cards once it is done.
pub const UPDATE_CARD: &str = "update_card";
/// How long WeCom takes a card's `response_code`: 72 hours, once.
pub const CARD_WINDOW: Millis = 72 * 3600 * 1000;
/// How long WeCom lets a message be recalled: 24 hours.
pub const RECALL_WINDOW: Millis = 24 * 3600 * 1000;
/// Users one `message/send` may name.
const MAX_USERS: usize = 1000;
/// Everyone the app can see, as `touser` says it.
const EVERYONE: &str = "@all";

/// A route's keys for WeCom.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComRoute {
    /// Everyone in the app's visible range instead of the event's recipients.
    #[serde(default)]
    pub to_all: bool,
    /// These department ids (`toparty`) instead of the event's recipients.
    #[serde(default)]
    pub departments: Vec<String>,
    /// These tag ids (`totag`) instead of the event's recipients.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When the to-do is done, recall its cards (within 24 hours) instead of marking them done.
    #[serde(default)]
    pub recall_on_finish: bool,
}

/// What changes a to-do's cards: the event that sent them and the button's new text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardUpdate {
    pub event: String,
    pub replace_name: String,
}

#[derive(Debug, Clone)]
pub struct Style {
    pub agent_id: i64,
    /// `duplicate_check_interval`, in seconds.
    pub duplicate_check_secs: u32,
}

/// What a notice is sent as.
fn kind(n: &Notice) -> Option<MsgType> {
    match (&n.intent, n.msgtype) {
        (Intent::Todo { .. }, _) => None,
        (_, Some(k @ (MsgType::Text | MsgType::Markdown))) => Some(k),
        (_, _) if n.link.is_some() => Some(MsgType::Link),
        _ => Some(MsgType::Text),
    }
}

/// `s` with HTML's special characters escaped (a textcard's description is HTML).
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Render for Style {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        if instance.is_some() || group.is_some() {
            return Err(BadTarget(
                "a wecom route takes no instance or group: one app sends to people (departments, \
                 tags or to_all reach more)"
                    .into(),
            ));
        }
        Ok(Target::default())
    }

    fn route_options(&self, options: &toml::Table, target: Target) -> Result<Target, BadTarget> {
        let route: WeComRoute = route_options(CONNECTOR, options)?;
        Ok(Target {
            audience: route.to_all || !route.departments.is_empty() || !route.tags.is_empty(),
            revoke_on_finish: route.recall_on_finish,
            options: serde_json::to_value(&route).unwrap_or_default(),
            ..target
        })
    }

    fn markdown(&self, n: &Notice, _: &Target) -> bool {
        kind(n) == Some(MsgType::Markdown)
    }

    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        let route: WeComRoute = serde_json::from_value(target.options.clone()).unwrap_or_default();
        let call = |action, recipients, message| Call {
            action,
            recipients,
            message,
        };
        let calls = match &n.intent {
            Intent::Finish {
                todo_event, status, ..
            } => {
                let update = CardUpdate {
                    event: todo_event.clone(),
                    replace_name: status.done.clone(),
                };
                vec![call(
                    Action::Own(UPDATE_CARD.into()),
                    users,
                    serde_json::to_value(update)?,
                )]
            }
            Intent::Revoke { of } => vec![call(Action::Revoke, users, json!({ "event": of }))],
            Intent::Message | Intent::Todo { .. } => {
                let content = self.content(n);
                if target.audience {
                    let mut body = self.envelope(&content);
                    if route.to_all {
                        body["touser"] = json!(EVERYONE);
                    }
                    if !route.departments.is_empty() {
                        body["toparty"] = json!(route.departments.join("|"));
                    }
                    if !route.tags.is_empty() {
                        body["totag"] = json!(route.tags.join("|"));
                    }
                    vec![call(Action::Send, vec![audience(&route)], body)]
                } else {
                    users
                        .chunks(MAX_USERS)
                        .enumerate()
                        .map(|(i, chunk)| {
                            let mut content = content.clone();
                            if let Some(card) = content.get_mut("template_card") {
                                card["task_id"] = json!(format!(
                                    "{}-{i}",
                                    card["task_id"].as_str().unwrap_or("")
                                ));
                            }
                            let mut body = self.envelope(&content);
                            body["touser"] = json!(chunk.join("|"));
                            call(Action::Send, chunk.to_vec(), body)
                        })
                        .collect()
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
        "WeCom userid"
    }
}

/// How an audience send names who it reached.
fn audience(route: &WeComRoute) -> String {
    let mut parts = vec![];
    if route.to_all {
        parts.push("all".to_owned());
    }
    parts.extend(route.departments.iter().map(|d| format!("party:{d}")));
    parts.extend(route.tags.iter().map(|t| format!("tag:{t}")));
    parts.join(",")
}

impl Style {
    /// The body's fields every send has: the app, the duplicate check, and `content`'s shape.
    fn envelope(&self, content: &Value) -> Value {
        let mut body = json!({
            "agentid": self.agent_id,
            "enable_duplicate_check": 1,
            "duplicate_check_interval": self.duplicate_check_secs,
        });
        if let (Some(b), Some(c)) = (body.as_object_mut(), content.as_object()) {
            b.extend(c.clone());
        }
        body
    }

    /// The message itself: `msgtype` and its object.
    fn content(&self, n: &Notice) -> Value {
        let details = n.language.pick("查看详情", "Details");
        let time = local_time(n.time);
        match kind(n) {
            None => {
                let open = match &n.intent {
                    Intent::Todo { status, .. } => status.open.as_str(),
                    _ => "",
                };
                let mut card = json!({
                    "card_type": "button_interaction",
                    "source": { "desc": n.app.clone().unwrap_or_else(|| n.from.to_owned()) },
                    "main_title": { "title": fit(&n.title, 128), "desc": format!("{open}｜{time}") },
                    "sub_title_text": fit(&n.text, 512),
                    "task_id": format!("hb{}{}", n.tag.trim_start_matches('#'), n.time),
                });
                card["button_list"] = match &n.link {
                    Some(url) => {
                        card["card_action"] = json!({ "type": 1, "url": url });
                        json!([{ "text": details, "style": 1, "type": 1, "url": url }])
                    }
                    None => json!([{ "text": open, "style": 1, "key": "open" }]),
                };
                json!({ "msgtype": "template_card", "template_card": card })
            }
            Some(MsgType::Link) => json!({ "msgtype": "textcard", "textcard": {
                "title": fit(&n.title, 128),
                "description": fit(&format!(
                    "<div class=\"gray\">{time} {}</div><div class=\"normal\">{}</div>",
                    n.tag, html(&n.text)
                ), 512),
                "url": n.link.clone().unwrap_or_default(),
                "btntxt": details,
            }}),
            Some(MsgType::Markdown) => {
                let mut lines = vec![format!("**{}**", n.title), n.text.clone()];
                lines.extend(n.details.iter().cloned());
                lines.extend(n.link.as_ref().map(|u| format!("[{details}]({u})")));
                lines.push(format!("> {time} {}", n.tag));
                json!({ "msgtype": "markdown", "markdown": { "content": fit(&lines.join("\n"), 2048) } })
            }
            Some(_) => {
                let mut lines = vec![format!("【{}】{}", n.title, n.tag), n.text.clone()];
                lines.extend(n.details.iter().cloned());
                lines.extend(n.link.as_ref().map(|u| format!("{details}：{u}")));
                lines.push(time);
                json!({ "msgtype": "text", "text": { "content": fit(&lines.join("\n"), 2048) } })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::TodoStatus;

    fn style() -> Style {
        Style {
            agent_id: 1000002,
            duplicate_check_secs: 1800,
        }
    }

    fn notice(intent: Intent, link: Option<&str>) -> Notice {
        Notice {
            title: "待办｜采购管理".into(),
            text: "请审批 <b>采购单</b>".into(),
            link: link.map(str::to_owned),
            app: Some("采购管理".into()),
            ..Notice::new("HAP", intent, "m1", 1_715_495_400_000, json!({}))
        }
    }

    fn todo() -> Intent {
        Intent::Todo {
            id: "m1".into(),
            status: TodoStatus::default(),
        }
    }

    fn plan(n: &Notice, route: &str, users: &[&str]) -> Plan {
        let s = style();
        let target = s
            .route_options(
                &toml::from_str(route).unwrap(),
                s.target(None, None).unwrap(),
            )
            .unwrap();
        s.plan(n, &target, users.iter().map(|u| (*u).to_owned()).collect())
            .unwrap()
    }

    #[test]
    fn a_todo_is_a_button_card_with_a_task_id_and_the_duplicate_check() {
        let p = plan(
            &notice(todo(), Some("https://hap/r")),
            "",
            &["zhangsan", "lisi"],
        );
        let body = &p.calls[0].message;
        assert_eq!(body["touser"], "zhangsan|lisi");
        assert_eq!(
            (
                body["agentid"].clone(),
                body["enable_duplicate_check"].clone()
            ),
            (json!(1000002), json!(1))
        );
        let card = &body["template_card"];
        assert_eq!(card["card_type"], "button_interaction");
        assert_eq!(card["main_title"]["desc"], "待处理｜2024-05-12 14:30");
        assert_eq!(card["button_list"][0]["url"], "https://hap/r");
        let task = card["task_id"].as_str().unwrap();
        assert!(
            task.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-@".contains(&b)),
            "{task}"
        );
    }

    #[test]
    fn notices_are_textcards_with_html_escaped_or_text_without_a_link() {
        let p = plan(
            &notice(Intent::Message, Some("https://hap/r")),
            "",
            &["zhangsan"],
        );
        let card = &p.calls[0].message["textcard"];
        assert!(
            card["description"]
                .as_str()
                .unwrap()
                .contains("&lt;b&gt;采购单&lt;/b&gt;"),
            "{card}"
        );
        let p = plan(&notice(Intent::Message, None), "", &["zhangsan"]);
        assert_eq!(p.calls[0].message["msgtype"], "text");
    }

    #[test]
    fn a_thousand_users_a_call_and_audiences_only_when_the_route_says() {
        let many: Vec<String> = (0..1500).map(|i| format!("u{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let p = plan(&notice(todo(), None), "", &many);
        assert_eq!(p.calls.len(), 2);
        assert_eq!(p.calls[1].recipients.len(), 500);
        let tasks: Vec<&Value> = p
            .calls
            .iter()
            .map(|c| &c.message["template_card"]["task_id"])
            .collect();
        assert_ne!(tasks[0], tasks[1], "a task id per card");
        let p = plan(
            &notice(Intent::Message, None),
            "departments = [\"2\", \"3\"]\ntags = [\"7\"]",
            &["x"],
        );
        let body = &p.calls[0].message;
        assert_eq!(
            (body["toparty"].clone(), body["totag"].clone()),
            (json!("2|3"), json!("7"))
        );
        assert!(body.get("touser").is_none());
        assert_eq!(p.calls[0].recipients, ["party:2,party:3,tag:7"]);
        let p = plan(&notice(Intent::Message, None), "to_all = true", &[]);
        assert_eq!(p.calls[0].message["touser"], "@all");
    }

    #[test]
    fn a_finish_updates_the_cards_and_a_recall_route_recalls_them() {
        let finish = Intent::Finish {
            todo_id: "m1".into(),
            todo_event: "EVT#hap#m1".into(),
            todo_kind: "todo",
            status: TodoStatus::default(),
        };
        let p = plan(&notice(finish.clone(), None), "", &["zhangsan"]);
        assert_eq!(p.calls[0].action, Action::Own(UPDATE_CARD.into()));
        assert_eq!(
            p.calls[0].message,
            json!({ "event": "EVT#hap#m1", "replace_name": "已处理" })
        );
        let s = style();
        let target = s
            .route_options(
                &toml::from_str("recall_on_finish = true").unwrap(),
                Target::default(),
            )
            .unwrap();
        assert!(target.revoke_on_finish);
        let p = s
            .plan(&notice(finish.revoked(), None), &target, vec![])
            .unwrap();
        assert_eq!(p.calls[0].action, Action::Revoke);
        assert!(
            s.route_options(
                &toml::from_str("to_everyone = true").unwrap(),
                Target::default()
            )
            .is_err()
        );
    }
}
