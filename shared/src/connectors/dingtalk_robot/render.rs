//! Robot message bodies: `text`, `markdown`, `link`, `actionCard` and `feedCard`, with the
//! route's users as @mentions (`@all` for everyone) and a `msgUuid` derived from the content,
//! so a retried post is one message. Text, Markdown and link read as the work notices do
//! (the same builders); the action card is the robot's camelCase form. Pure: no secrets.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use super::CONNECTOR;
use crate::connectors::dingtalk_msg::{Msg, NoticeFormat, action_card_msg, link_msg, notice_msg};
use crate::connectors::robots;
use crate::connectors::{BadTarget, Plan, Render, RenderError, Target};
use crate::notice::{MsgType, Notice};

/// Mentions a message may carry.
pub const MAX_MENTIONS: usize = 50;
/// The recipient that mentions everyone in the group.
pub const EVERYONE: &str = "@all";

/// The robots by name, with the keyword each one's security setting requires.
#[derive(Debug, Clone)]
pub struct Style {
    pub keywords: BTreeMap<String, Option<String>>,
}

impl Style {
    /// What the notice is posted as: its template's choice (an OA card, which robots lack,
    /// reads as Markdown), Markdown by default.
    fn kind(n: &Notice) -> MsgType {
        match n.msgtype {
            None | Some(MsgType::Oa) => MsgType::Markdown,
            Some(k) => k,
        }
    }
}

impl Render for Style {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        robots::target(instance, group, self.keywords.keys(), "the robots")
    }

    fn markdown(&self, n: &Notice, _: &Target) -> bool {
        matches!(Style::kind(n), MsgType::Markdown | MsgType::ActionCard)
    }

    /// One post to the route's robot, mentioning `users`; a to-do's finish has nothing to
    /// change in a group, so it posts nothing.
    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        let robot = target.instance.clone().unwrap_or_default();
        let keyword = self.keywords.get(&robot).and_then(Option::as_deref);
        let Some(n) = robots::postable(n, keyword) else {
            return Ok(Plan::default());
        };
        let mentions: Vec<String> = users.into_iter().take(MAX_MENTIONS).collect();
        let body = body(&n, &mentions, &robot)?;
        robots::plan(robot, body, mentions, vec![])
    }

    fn recipient_noun(&self) -> &'static str {
        "DingTalk userid or mobile to mention"
    }
}

/// The robot's body for `n`: the shape, the mentions, and `msgUuid`.
fn body(n: &Notice, mentions: &[String], robot: &str) -> Result<Value, serde_json::Error> {
    let markdown = || notice_msg(NoticeFormat::Markdown, n);
    let msg = match (Style::kind(n), &n.link) {
        (MsgType::Text, _) => notice_msg(NoticeFormat::Text, n),
        (MsgType::Link, Some(url)) if n.image.is_some() => {
            link_msg(n, url.clone(), n.image.as_deref().unwrap_or_default())
        }
        (MsgType::FeedCard, Some(url)) => {
            let feed = json!({ "links": [{
                "title": format!("{} {}", n.title, n.tag),
                "messageURL": url,
                "picURL": n.image.clone().unwrap_or_default(),
            }]});
            return finish(json!({ "msgtype": "feedCard", "feedCard": feed }), robot);
        }
        (MsgType::ActionCard, url) => match action_card_msg(n, url.clone()) {
            Some(Msg::ActionCard { action_card: c }) => {
                let btns: Vec<Value> = c
                    .btn_json_list
                    .iter()
                    .map(|b| json!({ "title": b.title, "actionURL": b.action_url }))
                    .collect();
                let mut card = json!({ "title": c.title, "text": c.markdown });
                if let (Some(t), Some(u)) = (c.single_title, c.single_url) {
                    (card["singleTitle"], card["singleURL"]) = (json!(t), json!(u));
                } else {
                    (card["btnOrientation"], card["btns"]) = (json!("0"), json!(btns));
                }
                return finish(
                    json!({ "msgtype": "actionCard", "actionCard": card }),
                    robot,
                );
            }
            _ => markdown(),
        },
        (MsgType::Link | MsgType::FeedCard, _) => notice_msg(NoticeFormat::Text, n),
        (MsgType::Markdown | MsgType::Oa, _) => markdown(),
    };
    let mut body = serde_json::to_value(msg)?;
    mention(&mut body, mentions);
    finish(body, robot)
}

/// Adds the @mentions: mobiles (11 digits from 1) and userids, `@all` for everyone; text and
/// Markdown name them in the text too, which is what makes DingTalk highlight them.
fn mention(body: &mut Value, mentions: &[String]) {
    if mentions.is_empty() {
        return;
    }
    let everyone = mentions.iter().any(|m| m == EVERYONE);
    let is_mobile =
        |m: &&String| m.len() == 11 && m.starts_with('1') && m.bytes().all(|b| b.is_ascii_digit());
    let people: Vec<&String> = mentions.iter().filter(|m| *m != EVERYONE).collect();
    let (mobiles, userids): (Vec<&String>, Vec<&String>) =
        people.iter().copied().partition(is_mobile);
    body["at"] = json!({ "atMobiles": mobiles, "atUserIds": userids, "isAtAll": everyone });
    let names: Vec<String> = mentions
        .iter()
        .map(|m| {
            if m == EVERYONE {
                m.clone()
            } else {
                format!("@{m}")
            }
        })
        .collect();
    let line = names.join(" ");
    for field in ["/text/content", "/markdown/text"] {
        if let Some(Value::String(s)) = body.pointer_mut(field) {
            s.push_str(if field == "/text/content" {
                "\n"
            } else {
                "  \n  "
            });
            s.push_str(&line);
        }
    }
}

/// Adds `msgUuid`: the same post (a retry) carries the same one, different posts differ.
fn finish(mut body: Value, robot: &str) -> Result<Value, serde_json::Error> {
    let mut digest = Sha1::new();
    digest.update(robot.as_bytes());
    digest.update(serde_json::to_vec(&body)?);
    let uuid = hex::encode(digest.finalize());
    body["msgUuid"] = json!(uuid[..32]);
    Ok(body)
}
