//! WeCom robot bodies: `markdown` by default (userids mentioned as `<@userid>`), `text` when the
//! route's template asks (it mentions by userid, mobile or `@all`), `news` for a link with a
//! picture, a `text_notice` template card for a card template with a link. Each within WeCom's
//! limits. Pure: no secrets.

use serde_json::{Value, json};

use super::CONNECTOR;
use crate::connectors::robots::{self, fit};
use crate::connectors::{BadTarget, Plan, Render, RenderError, Target};
use crate::notice::{Intent, MsgType, Notice, local_time};

/// The longest `text.content` WeCom takes, in bytes.
pub const MAX_TEXT_BYTES: usize = 2048;
/// The longest `markdown.content`, in bytes.
pub const MAX_MARKDOWN_BYTES: usize = 4096;
/// A news article's title and description, in bytes.
const MAX_NEWS_TITLE: usize = 128;
const MAX_NEWS_DESCRIPTION: usize = 512;
/// A template card's title, its description and its text, in characters (WeCom's guidance).
const MAX_CARD_TITLE: usize = 26;
const MAX_CARD_DESC: usize = 30;
const MAX_CARD_TEXT: usize = 112;
/// The mention that reaches everyone in the group.
pub const EVERYONE: &str = "@all";

/// The robots by name.
#[derive(Debug, Clone)]
pub struct Style {
    pub robots: Vec<String>,
}

/// What a notice is posted as: its template's choice where WeCom has it, Markdown otherwise.
fn kind(n: &Notice) -> MsgType {
    match n.msgtype {
        Some(MsgType::Text) => MsgType::Text,
        Some(MsgType::Link | MsgType::FeedCard) if n.link.is_some() => MsgType::Link,
        // A card opens its link when tapped: without one there is nothing to make it of.
        Some(MsgType::ActionCard | MsgType::Oa) if n.link.is_some() => MsgType::ActionCard,
        _ => MsgType::Markdown,
    }
}

/// A mobile number, as WeCom mentions by `mentioned_mobile_list` (11 digits from 1).
fn is_mobile(m: &str) -> bool {
    m.len() == 11 && m.starts_with('1') && m.bytes().all(|b| b.is_ascii_digit())
}

impl Render for Style {
    fn name(&self) -> &'static str {
        CONNECTOR
    }

    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        robots::target(instance, group, self.robots.iter(), "the WeCom robots")
    }

    fn markdown(&self, n: &Notice, _: &Target) -> bool {
        kind(n) == MsgType::Markdown
    }

    /// One post to the route's robot mentioning `users`; a finished to-do changes nothing in a
    /// group. Markdown cannot mention by mobile: those are reported, not silently dropped.
    fn plan(&self, n: &Notice, target: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        if !matches!(n.intent, Intent::Message | Intent::Todo { .. }) {
            return Ok(Plan::default());
        }
        let robot = target.instance.clone().unwrap_or_default();
        let (mentions, unmapped): (Vec<String>, Vec<String>) = match kind(n) {
            MsgType::Markdown => users.into_iter().partition(|u| !is_mobile(u)),
            // A template card mentions nobody: those it would have are reported.
            MsgType::ActionCard => (vec![], users),
            _ => (users, vec![]),
        };
        let body = body(n, &mentions);
        robots::plan(robot, body, mentions, unmapped)
    }

    fn recipient_noun(&self) -> &'static str {
        "WeCom userid to mention (mobiles only in text messages; nobody in a template card)"
    }
}

/// The body for `n`, mentioning `mentions`.
fn body(n: &Notice, mentions: &[String]) -> Value {
    let details = n.language.pick("查看详情", "Details");
    let time = local_time(n.time);
    match kind(n) {
        MsgType::Text => {
            let mut lines = vec![format!("【{}】{}", n.title, n.tag), n.text.clone()];
            lines.extend(n.details.iter().cloned());
            lines.extend(n.link.as_ref().map(|u| format!("{details}：{u}")));
            lines.push(time);
            let (mobiles, ids): (Vec<&String>, Vec<&String>) =
                mentions.iter().partition(|m| is_mobile(m));
            let mut text = json!({ "content": fit(&lines.join("\n"), MAX_TEXT_BYTES) });
            if !ids.is_empty() {
                text["mentioned_list"] = json!(ids);
            }
            if !mobiles.is_empty() {
                text["mentioned_mobile_list"] = json!(mobiles);
            }
            json!({ "msgtype": "text", "text": text })
        }
        MsgType::ActionCard => {
            let chars = |s: &str, n: usize| s.chars().take(n).collect::<String>();
            let link = n.link.clone().unwrap_or_default();
            json!({ "msgtype": "template_card", "template_card": {
                "card_type": "text_notice",
                "source": { "desc": chars(n.app.as_deref().unwrap_or(n.from), MAX_CARD_DESC) },
                "main_title": { "title": chars(&n.title, MAX_CARD_TITLE), "desc": chars(&format!("{time} {}", n.tag), MAX_CARD_DESC) },
                "sub_title_text": chars(&n.text, MAX_CARD_TEXT),
                "jump_list": [{ "type": 1, "url": link, "title": details }],
                "card_action": { "type": 1, "url": link },
            }})
        }
        MsgType::Link => json!({ "msgtype": "news", "news": { "articles": [{
            "title": fit(&format!("{} {}", n.title, n.tag), MAX_NEWS_TITLE),
            "description": fit(&n.text, MAX_NEWS_DESCRIPTION),
            "url": n.link.clone().unwrap_or_default(),
            "picurl": n.image.clone().unwrap_or_default(),
        }]}}),
        _ => {
            let mut tail = vec![];
            tail.extend(n.details.iter().cloned());
            tail.extend(n.link.as_ref().map(|u| format!("[{details}]({u})")));
            tail.push(format!("<font color=\"comment\">{time} {}</font>", n.tag));
            let at: Vec<String> = mentions
                .iter()
                .map(|m| match m.as_str() {
                    EVERYONE => "<@all>".to_owned(),
                    id => format!("<@{id}>"),
                })
                .collect();
            if !at.is_empty() {
                tail.push(at.join(" "));
            }
            let head = format!("**{}**\n", n.title);
            let tail = format!("\n{}", tail.join("\n"));
            // The text gives way first: the title, link, time and mentions always fit.
            let room = MAX_MARKDOWN_BYTES.saturating_sub(head.len() + tail.len());
            let content = fit(
                &format!("{head}{}{tail}", fit(&n.text, room)),
                MAX_MARKDOWN_BYTES,
            );
            json!({ "msgtype": "markdown", "markdown": { "content": content } })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Language, TodoStatus};

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

    fn style() -> Style {
        Style {
            robots: vec!["ops".into()],
        }
    }

    fn plan(n: &Notice, users: &[&str]) -> Plan {
        let target = style().target(None, None).unwrap();
        let users = users.iter().map(|u| (*u).to_owned()).collect();
        style().plan(n, &target, users).unwrap()
    }

    fn posted(p: &Plan) -> Value {
        p.calls[0].message["body"].clone()
    }

    #[test]
    fn markdown_mentions_userids_and_reports_mobiles() {
        let p = plan(
            &notice(None, "请审批"),
            &["zhangsan", "13800000000", "@all"],
        );
        let body = posted(&p);
        assert_eq!(body["msgtype"], "markdown");
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("**待办｜采购管理**\n请审批\n[查看详情](https://hap/r)\n"),
            "{content}"
        );
        assert!(content.ends_with("\n<@zhangsan> <@all>"), "{content}");
        assert_eq!(
            p.unmapped,
            ["13800000000"],
            "markdown cannot mention a mobile"
        );
        assert_eq!(p.calls[0].recipients, ["zhangsan", "@all"]);
    }

    #[test]
    fn a_card_template_is_a_text_notice_card_that_opens_the_link() {
        let long = "很长的正文".repeat(40);
        let p = plan(&notice(Some(MsgType::ActionCard), &long), &["zhangsan"]);
        let card = &posted(&p)["template_card"];
        assert_eq!(card["card_type"], "text_notice");
        assert_eq!(
            card["card_action"],
            json!({ "type": 1, "url": "https://hap/r" })
        );
        assert_eq!(card["main_title"]["title"], "待办｜采购管理");
        assert_eq!(
            card["sub_title_text"].as_str().unwrap().chars().count(),
            MAX_CARD_TEXT
        );
        assert_eq!(
            p.unmapped,
            ["zhangsan"],
            "a card mentions nobody: said, not dropped"
        );
        let mut no_link = notice(Some(MsgType::ActionCard), "x");
        no_link.link = None;
        assert_eq!(
            posted(&plan(&no_link, &[]))["msgtype"],
            "markdown",
            "no link: no card"
        );
    }

    #[test]
    fn text_mentions_by_userid_mobile_and_everyone() {
        let p = plan(
            &notice(Some(MsgType::Text), "请审批"),
            &["zhangsan", "13800000000", "@all"],
        );
        let body = posted(&p);
        assert_eq!(body["text"]["mentioned_list"], json!(["zhangsan", "@all"]));
        assert_eq!(
            body["text"]["mentioned_mobile_list"],
            json!(["13800000000"])
        );
        assert!(p.unmapped.is_empty());
        let content = body["text"]["content"].as_str().unwrap();
        assert!(content.starts_with("【待办｜采购管理】#"), "{content}");
    }

    #[test]
    fn bodies_keep_to_wecoms_byte_limits() {
        let long = "审".repeat(3000);
        let md = posted(&plan(&notice(None, &long), &["zhangsan"]));
        let content = md["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= MAX_MARKDOWN_BYTES, "{}", content.len());
        assert!(
            content.ends_with("<@zhangsan>") && content.contains("…"),
            "mentions survive"
        );
        let text = posted(&plan(&notice(Some(MsgType::Text), &long), &[]));
        assert!(text["text"]["content"].as_str().unwrap().len() <= MAX_TEXT_BYTES);
        let mut n = notice(Some(MsgType::Link), &long);
        n.image = Some("https://img/p.png".into());
        let news = posted(&plan(&n, &[]));
        let article = &news["news"]["articles"][0];
        assert!(article["description"].as_str().unwrap().len() <= 512);
        assert_eq!(article["url"], "https://hap/r");
    }

    #[test]
    fn a_finish_posts_nothing_and_english_reads_english() {
        let mut n = notice(None, "x");
        n.intent = Intent::Finish {
            todo_id: "m1".into(),
            todo_event: "EVT#hap#m1".into(),
            todo_kind: "todo",
            status: TodoStatus::default(),
        };
        assert!(plan(&n, &["zhangsan"]).calls.is_empty());
        let mut n = notice(None, "x");
        n.language = Language::En;
        let content = posted(&plan(&n, &[]))["markdown"]["content"].clone();
        assert!(
            content
                .as_str()
                .unwrap()
                .contains("[Details](https://hap/r)")
        );
    }

    #[test]
    fn routes_name_a_configured_robot() {
        let two = Style {
            robots: vec!["a".into(), "b".into()],
        };
        assert!(two.target(None, None).is_err());
        assert_eq!(
            two.target(Some("b"), None).unwrap().instance.as_deref(),
            Some("b")
        );
        assert!(two.target(Some("b"), Some("g")).is_err());
    }
}
