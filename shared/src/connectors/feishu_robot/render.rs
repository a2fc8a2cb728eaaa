//! Feishu / Lark custom bot bodies: rich text (`post`) by default, the title as its title, the
//! text, details and link as its lines and the mentions as `at` elements; `text` when the
//! route's template asks, mentions as `<at user_id="…"></at>`. Neither is Markdown, so values
//! go out as they are. The keyword a bot requires is put in front of a title that lacks it.
//! Pure: no secrets (the signature is added when sending).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::CONNECTOR;
use crate::connectors::robots::{self, fit};
use crate::connectors::{BadTarget, Plan, Render, RenderError, Target};
use crate::notice::{Language, MsgType, Notice, local_time};

/// The mention that reaches everyone in the group.
pub const EVERYONE: &str = "@all";
/// The most a body's text may take: Feishu refuses a request body over 20 KB, and the rest of
/// the body needs room.
pub const MAX_TEXT_BYTES: usize = 18 * 1024;

/// The bots by name, with the keyword each one's security setting requires.
#[derive(Debug, Clone)]
pub struct Style {
    pub keywords: BTreeMap<String, Option<String>>,
}

impl Render for Style {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        robots::target(instance, group, self.keywords.keys(), "the Feishu bots")
    }

    fn markdown(&self, _: &Notice, _: &Target) -> bool {
        false
    }

    /// One post to the route's bot mentioning `users`; a finished to-do changes nothing in a
    /// group.
    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        let bot = target.instance.clone().unwrap_or_default();
        let keyword = self.keywords.get(&bot).and_then(Option::as_deref);
        let Some(n) = robots::postable(n, keyword) else {
            return Ok(Plan::default());
        };
        let body = body(&n, &users);
        robots::plan(bot, body, users, vec![])
    }

    fn recipient_noun(&self) -> &'static str {
        "Feishu open_id or user_id to mention"
    }
}

/// Feishu's id of everyone in a mention.
fn at_id(m: &str) -> &str {
    if m == EVERYONE { "all" } else { m }
}

/// The body for `n`, mentioning `mentions`.
fn body(n: &Notice, mentions: &[String]) -> Value {
    let details = n.language.pick("查看详情", "Details");
    let text = fit(&n.text, MAX_TEXT_BYTES);
    let footer = format!("{} {}", local_time(n.time), n.tag);
    if n.msgtype == Some(MsgType::Text) {
        let mut lines = vec![format!("【{}】", n.title), text];
        lines.extend(n.details.iter().cloned());
        lines.extend(n.link.as_ref().map(|u| format!("{details}：{u}")));
        lines.push(footer);
        let at: Vec<String> = mentions
            .iter()
            .map(|m| format!("<at user_id=\"{}\"></at>", at_id(m)))
            .collect();
        if !at.is_empty() {
            lines.push(at.join(" "));
        }
        return json!({ "msg_type": "text", "content": { "text": lines.join("\n") } });
    }
    let line = |t: &str| json!([{ "tag": "text", "text": t }]);
    let mut content = vec![line(&text)];
    content.extend(n.details.iter().map(|d| line(d)));
    content.extend(
        n.link
            .as_ref()
            .map(|u| json!([{ "tag": "a", "text": details, "href": u }])),
    );
    content.push(line(&footer));
    if !mentions.is_empty() {
        let at: Vec<Value> = mentions
            .iter()
            .map(|m| json!({ "tag": "at", "user_id": at_id(m) }))
            .collect();
        content.push(Value::Array(at));
    }
    let locale = match n.language {
        Language::Zh => "zh_cn",
        Language::En => "en_us",
    };
    json!({ "msg_type": "post", "content": { "post": {
        locale: { "title": n.title, "content": content }
    }}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Intent, TodoStatus};

    fn notice(msgtype: Option<MsgType>, text: &str) -> Notice {
        Notice {
            title: "待办｜采购管理".into(),
            text: text.into(),
            link: Some("https://hap/r".into()),
            msgtype,
            ..Notice::new(
                "HAP",
                Intent::Todo {
                    id: "m1".into(),
                    status: TodoStatus::default(),
                },
                "m1",
                1_715_495_400_000,
                json!({}),
            )
        }
    }

    fn plan(keyword: Option<&str>, n: &Notice, users: &[&str]) -> Plan {
        let style = Style {
            keywords: [("ops".to_owned(), keyword.map(str::to_owned))].into(),
        };
        let target = style.target(None, None).unwrap();
        let users = users.iter().map(|u| (*u).to_owned()).collect();
        style.plan(n, &target, users).unwrap()
    }

    #[test]
    fn rich_text_with_the_link_the_time_and_the_mentions() {
        let p = plan(None, &notice(None, "请审批 *a*"), &["ou_1", "@all"]);
        let body = &p.calls[0].message["body"];
        assert_eq!(body["msg_type"], "post");
        let post = &body["content"]["post"]["zh_cn"];
        assert_eq!(post["title"], "待办｜采购管理");
        let content = post["content"].as_array().unwrap();
        assert_eq!(
            content[0][0]["text"], "请审批 *a*",
            "as it is: not Markdown"
        );
        assert_eq!(
            content[1][0],
            json!({"tag": "a", "text": "查看详情", "href": "https://hap/r"})
        );
        assert_eq!(
            content.last().unwrap(),
            &json!([{"tag": "at", "user_id": "ou_1"}, {"tag": "at", "user_id": "all"}])
        );
        assert_eq!(p.calls[0].recipients, ["ou_1", "@all"]);
    }

    #[test]
    fn text_mentions_with_at_tags_and_the_keyword_goes_in_front() {
        let p = plan(Some("告警"), &notice(Some(MsgType::Text), "x"), &["ou_1"]);
        let text = p.calls[0].message["body"]["content"]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.starts_with("【【告警】待办｜采购管理】"), "{text}");
        assert!(text.ends_with("<at user_id=\"ou_1\"></at>"), "{text}");
        let with = plan(Some("采购"), &notice(None, "x"), &[]);
        assert_eq!(
            with.calls[0].message["body"]["content"]["post"]["zh_cn"]["title"], "待办｜采购管理",
            "the title has the keyword already"
        );
    }

    #[test]
    fn a_long_text_fits_and_english_reads_english() {
        let long = "审".repeat(10_000);
        let p = plan(None, &notice(None, &long), &[]);
        let body = serde_json::to_vec(&p.calls[0].message["body"]).unwrap();
        assert!(body.len() < 20 * 1024, "{}", body.len());
        let mut n = notice(None, "x");
        n.language = Language::En;
        let p = plan(None, &n, &[]);
        let post = &p.calls[0].message["body"]["content"]["post"]["en_us"];
        assert_eq!(post["content"][1][0]["text"], "Details");
    }
}
