//! Routes from the config decide which connectors an event goes to; this module turns a parsed
//! event into the deliveries to store with it, recipients mapped and messages fully rendered.
//! Pure: no I/O, the same input always renders the same bytes (so a retried send is an exact
//! resend, which DingTalk drops as a same-day duplicate instead of showing twice).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tracing::warn;

use crate::config::{Config, MapMode, RecipientMap, Route};
use crate::connectors::dingtalk::{
    self, AsyncSend, MAX_STATUS_BAR_USERS, MAX_USERIDS, NoticeFormat, StatusUpdate,
};
use crate::connectors::zentao::{self, ContentFormat, UsersBy, ZenTaoInstance, ZenTaoMessage};
use crate::event::{Action, Delivery, Millis, Status, delivery_sk, event_pk};
use crate::logging::LogId;
use crate::notice::{local_time, tag};
use crate::sources::Parsed;
use crate::sources::SourceEvent;
use crate::sources::hap::{FinishTodo, HapKind};
use crate::templates::{Rendered, Templates};

/// DynamoDB takes at most 100 items in one transaction: the event and 99 deliveries.
pub const MAX_DELIVERIES: usize = 99;

#[derive(Debug, Clone)]
pub struct Router {
    /// Each route with the ZenTao instance it resolves to (for ZenTao routes).
    routes: Vec<(Route, Option<String>)>,
    forward_dms_test: bool,
    dingtalk: Option<dingtalk::Style>,
    zentao: BTreeMap<String, ZenTaoInstance>,
    recipients: BTreeMap<String, RecipientMap>,
    templates: Arc<Templates>,
}

impl Router {
    pub fn new(config: &Config) -> Result<Self, String> {
        Ok(Router {
            routes: config
                .routes
                .iter()
                .map(|r| (r.clone(), config.zentao_instance(r).map(str::to_owned)))
                .collect(),
            zentao: config.connectors.zentao.clone(),
            forward_dms_test: config.sources.dms.as_ref().is_some_and(|d| d.forward_test),
            dingtalk: config
                .connectors
                .dingtalk
                .as_ref()
                .map(dingtalk::Style::from),
            recipients: config.recipients.clone(),
            templates: Arc::new(Templates::new(&config.templates)?),
        })
    }

    /// The route's template (or the source's built-in one) rendered for this event.
    fn render(&self, route: &Route, parsed: &Parsed, markdown: bool) -> Rendered {
        let source = parsed.event.source.as_str();
        let context = context(parsed);
        let name = route.template.as_deref().unwrap_or(source);
        self.templates
            .render(name, &context, markdown)
            .unwrap_or_else(|e| {
                warn!(error = %e, "template failed; using the built-in one");
                self.templates
                    .render(source, &context, markdown)
                    .unwrap_or(Rendered {
                        title: source.to_owned(),
                        text: String::new(),
                    })
            })
    }

    /// The deliveries for one event: every matching route applies, except that of routes with
    /// the same target (connector, instance, group, fixed users) only the first does, so an
    /// overlap in the config cannot send the same message twice.
    pub fn plan(&self, parsed: &Parsed, now: Millis) -> Vec<Delivery> {
        let event = &parsed.event;
        let mut chosen: Vec<&(Route, Option<String>)> = vec![];
        for route in &self.routes {
            let r = &route.0;
            let kind_matches = r.kinds.as_ref().is_none_or(|kinds| {
                kinds
                    .iter()
                    .any(|k| k == &event.kind || (event.kind == "todo_finished" && k == "todo"))
            });
            let when_matches = r.when.as_ref().is_none_or(|when| {
                when.iter().all(|(field, accepted)| {
                    accepted.iter().any(|v| v.matches(&event.payload[field]))
                })
            });
            let same_target = |c: &&(Route, Option<String>)| {
                c.0.connector == r.connector
                    && c.1 == route.1
                    && c.0.group == r.group
                    && c.0.users == r.users
            };
            if r.source == event.source
                && kind_matches
                && when_matches
                && !chosen.iter().any(same_target)
            {
                chosen.push(route);
            }
        }
        let mut out = vec![];
        for (route, instance) in chosen {
            match (route.connector.as_str(), &self.dingtalk, instance) {
                (dingtalk::CONNECTOR, Some(dt), _) => {
                    out.extend(self.dingtalk_deliveries(dt, route, parsed, now));
                }
                (zentao::CONNECTOR, _, Some(instance)) => {
                    out.extend(self.zentao_deliveries(instance, route, parsed, now));
                }
                (connector, _, _) => {
                    warn!(connector, "route to a connector that is not configured")
                }
            }
        }
        // Several routes may send with one connector: number its deliveries across them.
        let mut next: BTreeMap<String, usize> = BTreeMap::new();
        for d in &mut out {
            let n = next.entry(d.connector.clone()).or_default();
            d.sk = delivery_sk(&d.connector, *n);
            *n += 1;
        }
        out
    }

    /// The route's fixed users, or the event's, mapped.
    fn recipients(
        &self,
        route: &Route,
        connector: &str,
        ids: &[String],
        always_require: bool,
    ) -> (Vec<String>, Vec<String>) {
        match &route.users {
            Some(fixed) => (fixed.clone(), vec![]),
            None => self.map_users(connector, ids, always_require),
        }
    }

    fn zentao_deliveries(
        &self,
        instance: &str,
        route: &Route,
        parsed: &Parsed,
        now: Millis,
    ) -> Vec<Delivery> {
        let Some(settings) = self.zentao.get(instance) else {
            return vec![];
        };
        let pk = parsed.event.pk();
        let markdown = settings.content == ContentFormat::Markdown;
        let (content, ids, always_require) = match &parsed.input {
            // ZenTao cannot update a notification it showed: a finished to-do sends nothing.
            SourceEvent::HapFinish(_) => return vec![],
            SourceEvent::HapMessage(m) => (
                m.notice(
                    parsed.event.received_at,
                    self.render(route, parsed, markdown),
                ),
                m.targets.clone(),
                false,
            ),
            SourceEvent::Dms(e) if e.is_test() && !self.forward_dms_test => return vec![],
            SourceEvent::Dms(e) => {
                let ids = e.recipients().iter().map(|u| u.uid.clone()).collect();
                (
                    e.notice(&parsed.event, self.render(route, parsed, markdown)),
                    ids,
                    true,
                )
            }
        };
        let todo = matches!(&parsed.input, SourceEvent::HapMessage(m) if m.kind() == HapKind::Todo);
        let (users, mut unmapped) = match &route.group {
            Some(_) => (vec![], vec![]),
            None => self.recipients(route, zentao::CONNECTOR, &ids, always_require),
        };
        // ZenTao picks accounts or ids by the first entry: every entry must be of one kind.
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
        let mut out = vec![];
        if route.group.is_some() || !users.is_empty() {
            let recipients: Vec<String> = match &route.group {
                Some(gid) => vec![format!("group:{gid}")],
                None => users
                    .iter()
                    .map(|u| u.as_str().map_or_else(|| u.to_string(), str::to_owned))
                    .collect(),
            };
            let notice = zentao::notice(
                settings,
                &content,
                route.group.clone(),
                users,
                todo,
                markdown,
            );
            let message = ZenTaoMessage {
                instance: instance.to_owned(),
                notice,
            };
            let message = serde_json::to_value(message).unwrap_or_default();
            out.push(Delivery::new(
                &pk,
                zentao::CONNECTOR,
                0,
                Action::Send,
                recipients,
                message,
                now,
            ));
        }
        out.extend(unmapped_report(
            &pk,
            zentao::CONNECTOR,
            out.len(),
            &unmapped,
            now,
        ));
        out
    }

    /// Maps source user ids to connector recipients: `(mapped, unmapped)`. Unmapped ids are
    /// passed through unless the map's mode is `require` or the source's ids can never be the
    /// connector's (`always_require`, e.g. Alibaba Cloud UIDs).
    fn map_users(
        &self,
        connector: &str,
        ids: &[String],
        always_require: bool,
    ) -> (Vec<String>, Vec<String>) {
        let map = self.recipients.get(connector);
        let require = always_require || map.is_some_and(|m| m.mode == MapMode::Require);
        let (mut out, mut unmapped): (Vec<String>, Vec<String>) = (vec![], vec![]);
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let mut guid_like = 0usize;
        for id in ids {
            let mapped = match map.and_then(|m| m.map.get(id)) {
                Some(m) => m.clone(),
                None if require => {
                    unmapped.push(id.clone());
                    continue;
                }
                None => {
                    guid_like += usize::from(looks_like_guid(id));
                    id.clone()
                }
            };
            if seen.insert(mapped.clone()) {
                out.push(mapped);
            }
        }
        // One line per event, not one per recipient: 25,000 targets must not be 25,000 lines.
        if let Some(first) = unmapped.first() {
            warn!(connector, count = unmapped.len(), first = %LogId(first), "no recipient mapping; not sent to these users");
        }
        if guid_like > 0 {
            warn!(
                connector,
                count = guid_like,
                "unmapped ids look like HAP account ids, which {connector} will not know; add them to [recipients.{connector}.map]"
            );
        }
        (out, unmapped)
    }

    fn dingtalk_deliveries(
        &self,
        dt: &dingtalk::Style,
        route: &Route,
        parsed: &Parsed,
        now: Millis,
    ) -> Vec<Delivery> {
        let pk = parsed.event.pk();
        match &parsed.input {
            SourceEvent::HapFinish(f) => {
                let update = serde_json::to_value(self.finish_update(f)).unwrap_or_default();
                let action = Action::UpdateStatus;
                vec![Delivery::new(
                    &pk,
                    dingtalk::CONNECTOR,
                    0,
                    action,
                    vec![],
                    update,
                    now,
                )]
            }
            SourceEvent::Dms(e) => {
                if e.is_test() && !self.forward_dms_test {
                    return vec![];
                }
                let ids: Vec<String> = e.recipients().iter().map(|u| u.uid.clone()).collect();
                let (users, unmapped) = self.recipients(route, dingtalk::CONNECTOR, &ids, true);
                let markdown = dt.notice_format == NoticeFormat::Markdown;
                let content = e.notice(&parsed.event, self.render(route, parsed, markdown));
                let sends = users
                    .chunks(MAX_USERIDS)
                    .map(|g| (g.to_vec(), dingtalk::notice(dt, &content, g)))
                    .collect();
                numbered(&pk, sends, &unmapped, now)
            }
            SourceEvent::HapMessage(m) => {
                let (users, unmapped) =
                    self.recipients(route, dingtalk::CONNECTOR, &m.targets, false);
                let report = unmapped_report(&pk, dingtalk::CONNECTOR, 0, &unmapped, now);
                if users.is_empty() {
                    warn!("HAP message has no recipients; stored without deliveries");
                    return report.into_iter().collect();
                }
                let url = (!m.redirect_url.is_empty())
                    .then(|| m.redirect_url.clone())
                    .or_else(|| dt.default_url.clone());
                let groups = match (m.kind(), url) {
                    (HapKind::Todo, Some(url)) => {
                        dingtalk::todo_groups(&users, dt.fanout, MAX_DELIVERIES)
                            .into_iter()
                            .map(|g| {
                                let with_bar = g.len() <= MAX_STATUS_BAR_USERS;
                                (
                                    g.clone(),
                                    dingtalk::todo_card(
                                        dt.agent_id,
                                        &m.notice(
                                            parsed.event.received_at,
                                            self.render(route, parsed, false),
                                        ),
                                        &url,
                                        with_bar,
                                        g,
                                    ),
                                )
                            })
                            .collect::<Vec<_>>()
                    }
                    _ => users
                        .chunks(MAX_USERIDS)
                        .map(|g| {
                            let markdown = dt.notice_format == NoticeFormat::Markdown;
                            let content = m.notice(
                                parsed.event.received_at,
                                self.render(route, parsed, markdown),
                            );
                            let send = dingtalk::notice(dt, &content, g);
                            (g.to_vec(), send)
                        })
                        .collect(),
                };
                numbered(&pk, groups, &unmapped, now)
            }
        }
    }

    fn finish_update(&self, f: &FinishTodo) -> StatusUpdate {
        let done = dingtalk::todo_done();
        StatusUpdate {
            event: event_pk("hap", &f.message_id),
            user: f.user().and_then(|u| {
                self.map_users(dingtalk::CONNECTOR, &[u.to_owned()], false)
                    .0
                    .pop()
            }),
            status_value: done.status_value,
            status_bg: done.status_bg,
        }
    }
}

fn looks_like_guid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// What templates see: the event's fields by name, plus `label` (HAP), `tag` and `time`.
fn context(parsed: &Parsed) -> Value {
    let mut context = parsed.event.payload.clone();
    let (tag_source, at) = match &parsed.input {
        SourceEvent::HapMessage(m) => {
            context["label"] = Value::from(m.kind().label());
            (m.message_id.as_str(), parsed.event.received_at)
        }
        SourceEvent::HapFinish(f) => (f.message_id.as_str(), parsed.event.received_at),
        SourceEvent::Dms(e) => (
            parsed.event.key.as_str(),
            e.event_time.unwrap_or(parsed.event.received_at),
        ),
    };
    if context.is_object() {
        context["tag"] = Value::from(tag(tag_source));
        context["time"] = Value::from(local_time(at));
    }
    context
}

/// DingTalk sends numbered in order, then the report of recipients without a mapping.
fn numbered(
    pk: &str,
    sends: Vec<(Vec<String>, AsyncSend)>,
    unmapped: &[String],
    now: Millis,
) -> Vec<Delivery> {
    let mut out: Vec<Delivery> = sends
        .into_iter()
        .enumerate()
        .map(|(n, (users, send))| {
            let message = serde_json::to_value(send).unwrap_or_default();
            Delivery::new(
                pk,
                dingtalk::CONNECTOR,
                n,
                Action::Send,
                users,
                message,
                now,
            )
        })
        .collect();
    out.extend(unmapped_report(
        pk,
        dingtalk::CONNECTOR,
        out.len(),
        unmapped,
        now,
    ));
    out
}

/// A delivery that records, visibly and never sent, which recipients had no mapping.
fn unmapped_report(
    pk: &str,
    connector: &str,
    n: usize,
    unmapped: &[String],
    now: Millis,
) -> Option<Delivery> {
    if unmapped.is_empty() {
        return None;
    }
    let mut d = Delivery::new(
        pk,
        connector,
        n,
        Action::Send,
        unmapped.to_vec(),
        Value::Null,
        now,
    );
    d.status = Status::Skipped;
    let who = if connector == dingtalk::CONNECTOR {
        "DingTalk userid"
    } else {
        "recipient"
    };
    d.last_error = Some(format!(
        "no {who} for {}: add them to [recipients.{connector}.map]",
        unmapped.join(", ")
    ));
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::dingtalk::Msg;
    use crate::sources::Source;
    use crate::sources::hap::{HapSource, MESSAGE_PATH, TODO_PATH};

    fn router(extra: &str) -> Router {
        let config = Config::from_toml(&format!(
            r#"
            [sources.hap]
            tokens = ["plain:t"]
            [connectors.dingtalk]
            agent_id = 77
            {extra}
            [[routes]]
            source = "hap"
            connector = "dingtalk"
            "#
        ))
        .unwrap();
        Router::new(&config).unwrap()
    }

    fn parse(path: &str, body: &str) -> Parsed {
        HapSource::new("x-t", vec!["t".into()], 1 << 20)
            .unwrap()
            .parse(
                path,
                body.as_bytes(),
                1_715_495_400_000,
                crate::sources::Verify::Yes,
            )
            .unwrap()
    }

    fn todo(targets: usize) -> Parsed {
        let users: Vec<String> = (0..targets).map(|i| format!("\"u{i}\"")).collect();
        parse(
            MESSAGE_PATH,
            &format!(
                r#"{{"messageId":"8d3e6f1a-4c2b","messageTypeV2":14,"appName":"采购管理","message":"请审批","redirectUrl":"https://hap/x","targets":[{}]}}"#,
                users.join(",")
            ),
        )
    }

    fn send_of(d: &Delivery) -> AsyncSend {
        serde_json::from_value(d.message.clone()).unwrap()
    }

    #[test]
    fn todo_is_one_card_per_user_with_a_status_bar() {
        let plan = router("").plan(&todo(12), 0);
        assert_eq!(plan.len(), 12);
        for (i, d) in plan.iter().enumerate() {
            assert_eq!(d.recipients, [format!("u{i}")]);
            let s = send_of(d);
            assert_eq!(
                (s.agent_id, s.userid_list.as_str()),
                (77, format!("u{i}").as_str())
            );
            let Msg::Oa { oa } = s.msg else {
                panic!("not OA")
            };
            assert_eq!(oa.status_bar.unwrap().status_value, "待处理");
            assert_eq!(oa.message_url, "https://hap/x");
            assert_eq!(oa.body.content.as_deref(), Some("#8d3e6f"));
            let rows: Vec<_> = oa
                .body
                .form
                .iter()
                .map(|r| (r.key.as_str(), r.value.as_str()))
                .collect();
            assert_eq!(
                rows,
                [
                    ("应用：", "采购管理"),
                    ("消息：", "请审批"),
                    ("时间：", "2024-05-12 14:30")
                ]
            );
        }
        assert_eq!(plan[11].sk, "DLV#dingtalk#011");
    }

    #[test]
    fn chunk5_groups_five_per_card() {
        let plan = router("todo_fanout = \"chunk5\"").plan(&todo(12), 0);
        let sizes: Vec<usize> = plan.iter().map(|d| d.recipients.len()).collect();
        assert_eq!(sizes, [5, 5, 2]);
        assert!(plan.iter().all(|d| send_of(d).msg.has_status_bar()));
    }

    #[test]
    fn huge_todos_stay_within_one_transaction() {
        let plan = router("").plan(&todo(150), 0);
        assert_eq!(plan.len(), 30, "per_user falls back to 5 per card");
        let plan = router("").plan(&todo(600), 0);
        assert_eq!(plan.len(), 6, "beyond 495 users: plain cards of 100");
        assert!(plan.iter().all(|d| !send_of(d).msg.has_status_bar()));
    }

    #[test]
    fn other_kinds_are_markdown_in_chunks_of_100() {
        let users: Vec<String> = (0..150).map(|i| format!("\"u{i}\"")).collect();
        let p = parse(
            MESSAGE_PATH,
            &format!(
                r#"{{"messageId":"1a2b3c4d","messageTypeV2":16,"appName":"合同","message":"第一行\n第二行","targets":[{}]}}"#,
                users.join(",")
            ),
        );
        let plan = router("").plan(&p, 0);
        assert_eq!(
            plan.iter().map(|d| d.recipients.len()).collect::<Vec<_>>(),
            [100, 50]
        );
        let Msg::Markdown { markdown } = send_of(&plan[0]).msg else {
            panic!()
        };
        assert_eq!(markdown.title, "系统消息｜合同");
        assert!(
            markdown
                .text
                .starts_with("#### 系统消息｜合同 #1a2b3c  \n  第一行  \n  第二行"),
            "{}",
            markdown.text
        );
    }

    #[test]
    fn notices_can_be_plain_text() {
        let p = parse(
            MESSAGE_PATH,
            r#"{"messageId":"9f8e7d6c","messageTypeV2":12,"appName":"客户","message":"请补充报价","redirectUrl":"https://hap/r","targets":["a"]}"#,
        );
        let plan = router("notice_format = \"text\"").plan(&p, 1_715_495_400_000);
        let Msg::Text { text } = send_of(&plan[0]).msg else {
            panic!("not text")
        };
        assert_eq!(
            text.content,
            "【@提及｜客户】#9f8e7d\n请补充报价\n查看详情：https://hap/r\n2024-05-12 14:30"
        );
    }

    #[test]
    fn recipients_are_mapped() {
        let r = router(
            r#"
            [recipients.dingtalk]
            mode = "require"
            map = { u0 = "ding0", u2 = "ding0" }
            "#,
        );
        let plan = r.plan(&todo(3), 0);
        assert_eq!(plan.len(), 2, "one card: u2 maps to the same user as u0");
        assert_eq!(
            (plan[0].recipients.clone(), plan[0].status),
            (vec!["ding0".to_owned()], Status::Pending)
        );
        // u1 is not sent to, and says so where operators look.
        assert_eq!(
            (plan[1].recipients.clone(), plan[1].status),
            (vec!["u1".to_owned()], Status::Skipped)
        );
        assert!(
            plan[1]
                .last_error
                .as_deref()
                .unwrap()
                .contains("no DingTalk userid for u1")
        );
    }

    #[test]
    fn finish_becomes_a_status_update_for_the_mapped_user() {
        let r = router("[recipients.dingtalk]\nmap = { hapuser = \"ding9\" }");
        let plan = r.plan(
            &parse(TODO_PATH, r#"{"messageId":"m1","userId":"hapuser"}"#),
            0,
        );
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].action, Action::UpdateStatus);
        let u: StatusUpdate = serde_json::from_value(plan[0].message.clone()).unwrap();
        assert_eq!(
            (u.event.as_str(), u.user.as_deref()),
            ("EVT#hap#m1", Some("ding9"))
        );
        assert_eq!(u.status_value, "已处理");
    }

    #[test]
    fn kinds_filter_routes_and_finishes_follow_todos() {
        let config = Config::from_toml(
            r#"
            [sources.hap]
            tokens = ["plain:t"]
            [connectors.dingtalk]
            agent_id = 1
            [[routes]]
            source = "hap"
            connector = "dingtalk"
            kinds = ["todo"]
            "#,
        )
        .unwrap();
        let r = Router::new(&config).unwrap();
        assert_eq!(r.plan(&todo(1), 0).len(), 1);
        assert_eq!(
            r.plan(&parse(TODO_PATH, r#"{"messageId":"m"}"#), 0).len(),
            1
        );
        let mention = parse(
            MESSAGE_PATH,
            r#"{"messageId":"m","messageTypeV2":12,"targets":["a"]}"#,
        );
        assert!(r.plan(&mention, 0).is_empty());
    }

    #[test]
    fn todo_without_any_url_becomes_a_notice() {
        let p = parse(
            MESSAGE_PATH,
            r#"{"messageId":"m","messageTypeV2":14,"targets":["a"]}"#,
        );
        assert!(matches!(
            send_of(&router("").plan(&p, 0)[0]).msg,
            Msg::Markdown { .. }
        ));
        let plan = router("default_url = \"https://hap.example.com\"").plan(&p, 0);
        assert!(send_of(&plan[0]).msg.has_status_bar());
    }

    #[test]
    fn guid_detection() {
        assert!(looks_like_guid("3f2a9c1e-7b4d-4e6a-9f0c-1d2e3f4a5b6c"));
        assert!(!looks_like_guid("manager4220"));
        assert!(!looks_like_guid("3f2a9c1e-7b4d-4e6a-9f0c-1d2e3f4a5b6"));
    }
}
