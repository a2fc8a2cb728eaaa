//! HAP (MingDao private deployment) message integration: `POST /hap/message` (every app
//! message) and `POST /hap/todo` (a to-do was finished), as HAP's 消息集成 (message
//! integration) settings send them.
//!
//! HAP signs nothing; it sends the static headers configured in `WebhookHeaders`, so one of
//! them carries a shared token that we compare in constant time.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{Accepted, Head, Parsed, Rejection, Source, SourcePart, Verify};
use super::{decode, default_max_body, lenient, payload};
use crate::event::{Event, Millis, event_pk};
use crate::notice::{Intent, Notice, TodoStatus};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::templates::Builtin;

const SOURCE: &str = "hap";
pub const MESSAGE_PATH: &str = "/hap/message";
pub const TODO_PATH: &str = "/hap/todo";
/// How readers know this source.
const FROM: &str = "HAP";

// ---- config: [sources.hap] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HapConfig {
    /// The header set in HAP's `WebhookHeaders`.
    #[serde(default = "default_hap_header")]
    pub header: String,
    /// Accepted values of that header; more than one allows rotation.
    pub tokens: Vec<SecretRef>,
    /// Larger bodies are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_hap_header() -> String {
    "X-Hookbridge-Token".into()
}

/// What a HAP message is, from `messageTypeV2`, falling back to the legacy `messageType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HapKind {
    /// 11
    WorksheetSystem,
    /// 12
    Mention,
    /// 13
    Reply,
    /// 14 (V2: fill-in or approval only; legacy 14 alone is treated as a to-do too: a spurious
    /// status bar is harmless, a missing one is not)
    Todo,
    /// 15
    WorkflowSystem,
    /// 16
    WorkflowSystemRecorded,
    /// Any other code, or none: still delivered, as a plain notification.
    #[default]
    Unknown,
}

impl HapKind {
    pub fn from_code(code: Option<u16>) -> Self {
        match code {
            Some(11) => HapKind::WorksheetSystem,
            Some(12) => HapKind::Mention,
            Some(13) => HapKind::Reply,
            Some(14) => HapKind::Todo,
            Some(15) => HapKind::WorkflowSystem,
            Some(16) => HapKind::WorkflowSystemRecorded,
            _ => HapKind::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HapKind::WorksheetSystem => "worksheet_system",
            HapKind::Mention => "mention",
            HapKind::Reply => "reply",
            HapKind::Todo => "todo",
            HapKind::WorkflowSystem => "workflow_system",
            HapKind::WorkflowSystemRecorded => "workflow_system_recorded",
            HapKind::Unknown => "unknown",
        }
    }

    /// How a reader should see the kind (the product's own wording).
    pub fn label(self) -> &'static str {
        match self {
            HapKind::Mention => "@提及",
            HapKind::Reply => "回复",
            HapKind::Todo => "待办",
            _ => "系统消息",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub link: String,
    pub name: String,
}

impl Attachment {
    /// `link|name`, split at the first `|` (names may contain `|`, links are URL-encoded).
    fn parse(entry: &str) -> Self {
        let (link, name) = entry.split_once('|').unwrap_or((entry, ""));
        Attachment {
            link: link.trim().to_owned(),
            name: name.trim().to_owned(),
        }
    }

    pub fn is_image(&self) -> bool {
        const EXT: [&str; 6] = [".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"];
        let lower = |s: &str| s.to_ascii_lowercase();
        let path = lower(self.link.split(['?', '#']).next().unwrap_or(""));
        EXT.iter()
            .any(|e| path.ends_with(e) || lower(&self.name).ends_with(e))
            || path.contains("/mdpic/")
    }
}

/// The ids with the shape of a GUID (HAP's own account ids), which no connector's user ids
/// have.
fn own_accounts<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> Vec<String> {
    ids.into_iter()
        .map(|id| id.as_ref().to_owned())
        .filter(|id| looks_like_guid(id))
        .collect()
}

fn looks_like_guid(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A message push, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HapMessage {
    #[serde(deserialize_with = "lenient::id")]
    pub message_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub message: String,
    #[serde(default, deserialize_with = "lenient::code")]
    pub message_type: Option<u16>,
    #[serde(default, deserialize_with = "lenient::code")]
    pub message_type_v2: Option<u16>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub app_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub app_name: String,
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub attachments: Vec<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub redirect_url: String,
    #[serde(default, deserialize_with = "lenient::id_list")]
    pub targets: Vec<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub project_id: String,
    /// Empty for system-triggered messages.
    #[serde(default, deserialize_with = "lenient::string")]
    pub create_user_id: String,
    /// Only present for workflow messages.
    #[serde(default, deserialize_with = "lenient::string")]
    pub process_id: String,
}

impl HapMessage {
    /// The notice this message makes, received at `received_at`; `fields` are what templates
    /// see.
    fn notice(&self, received_at: Millis, mut fields: serde_json::Value) -> Notice {
        fields["label"] = json!(self.kind().label());
        let attachments = self.attachments();
        let names: Vec<&str> = attachments
            .iter()
            .map(|a| a.name.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        let attachment_line = (!attachments.is_empty())
            .then(|| format!("附件 {} 个：{}", attachments.len(), names.join("、")));
        let intent = match self.kind() {
            HapKind::Todo => Intent::Todo {
                id: self.message_id.clone(),
                status: TodoStatus::default(),
            },
            _ => Intent::Message,
        };
        Notice {
            app: (!self.app_name.is_empty()).then(|| self.app_name.clone()),
            recipients: self.targets.clone(),
            own_accounts: own_accounts(&self.targets),
            link: (!self.redirect_url.is_empty()).then(|| self.redirect_url.clone()),
            images: attachments
                .iter()
                .filter(|a| a.is_image())
                .map(|a| (a.name.clone(), a.link.clone()))
                .collect(),
            details: attachment_line.into_iter().collect(),
            attachments: attachments.len(),
            ..Notice::new(FROM, intent, &self.message_id, received_at, fields)
        }
    }

    pub fn kind(&self) -> HapKind {
        HapKind::from_code(self.message_type_v2.or(self.message_type))
    }

    pub fn attachments(&self) -> Vec<Attachment> {
        self.attachments
            .iter()
            .map(|a| Attachment::parse(a))
            .collect()
    }
}

/// A to-do was finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishTodo {
    #[serde(deserialize_with = "lenient::id")]
    pub message_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub project_id: String,
    /// Who finished it; empty means "close it for everyone".
    #[serde(default, deserialize_with = "lenient::string")]
    pub user_id: String,
    /// Not in the vendor page; accepted as a synonym of `userId` when that is missing.
    #[serde(default, deserialize_with = "lenient::string", skip_serializing)]
    account_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub process_id: String,
}

impl FinishTodo {
    pub fn user(&self) -> Option<&str> {
        [&self.user_id, &self.account_id]
            .into_iter()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
    }

    /// The to-do's cards turn done: only the finishing user's, or everyone's without a user.
    fn notice(&self, received_at: Millis, fields: serde_json::Value) -> Notice {
        let intent = Intent::Finish {
            todo_id: self.message_id.clone(),
            todo_event: event_pk(SOURCE, &self.message_id),
            todo_kind: HapKind::Todo.as_str(),
            status: TodoStatus::default(),
        };
        Notice {
            recipients: self.user().map(str::to_owned).into_iter().collect(),
            own_accounts: own_accounts(self.user()),
            ..Notice::new(FROM, intent, &self.message_id, received_at, fields)
        }
    }
}

pub struct HapSource {
    header: http::HeaderName,
    tokens: Vec<String>,
    max_body_bytes: usize,
}

impl HapSource {
    pub fn new(
        header: &str,
        tokens: Vec<String>,
        max_body_bytes: usize,
    ) -> Result<Self, ConfigError> {
        let header = http::HeaderName::try_from(header).map_err(|_| {
            ConfigError::Invalid(format!(
                "sources.hap.header {header:?} is not a valid header name"
            ))
        })?;
        if tokens.is_empty() {
            return Err(ConfigError::Invalid(
                "sources.hap.tokens must list at least one token".into(),
            ));
        }
        Ok(HapSource {
            header,
            tokens,
            max_body_bytes,
        })
    }
}

#[async_trait]
impl SourcePart for HapSource {
    type Config = HapConfig;
    const TEMPLATE: Builtin = Builtin {
        title: "{{ label }}{% if appName %}｜{{ appName }}{% endif %}",
        text: "{{ message }}",
    };

    async fn build(config: &HapConfig, secrets: &Secrets) -> Result<Arc<dyn Source>, ConfigError> {
        let mut tokens = vec![];
        for t in &config.tokens {
            tokens.push(secrets.resolve(t).await?);
        }
        let source = HapSource::new(&config.header, tokens, config.max_body_bytes)?;
        Ok(Arc::new(source))
    }

    /// HAP's `appextensions.json`: the two webhook URLs and the header with the token.
    #[cfg(feature = "cli")]
    async fn setup(
        hap: &HapConfig,
        at: &crate::tools::Deployment,
    ) -> Result<String, crate::tools::ToolError> {
        let token = hap.tokens.first().ok_or("[sources.hap] has no tokens")?;
        let extensions = json!({
            "WebhookUrl": format!("{}{MESSAGE_PATH}", at.api),
            "FinishTodoWebhookUrl": format!("{}{TODO_PATH}", at.api),
            "WebhookHeaders": { hap.header.clone(): at.secret(token).await? },
        });
        Ok(format!(
            "Write this to /data/hap/script/volume/integrate/appextensions.json on the HAP host\n\
             (mounted at /usr/local/MDPrivateDeployment/integrate/appextensions.json), then\n\
             restart HAP's microservices:\n\n{}\n",
            serde_json::to_string_pretty(&extensions)?
        ))
    }
}

impl Source for HapSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn credentials(&self) -> String {
        format!("header {}: the token in [sources.hap] tokens", self.header)
    }

    fn paths(&self) -> &'static [&'static str] {
        &[MESSAGE_PATH, TODO_PATH]
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn authenticate(&self, head: &Head) -> Result<(), Rejection> {
        let headers = head.headers;
        // One value, read the same way by every server: with the header twice, one proxy would
        // check the first and another the joined "a, b".
        let mut values = headers.get_all(&self.header).iter();
        let (Some(given), None) = (values.next(), values.next()) else {
            return Err(Rejection::Unauthorized(
                match headers.get_all(&self.header).iter().count() {
                    0 => format!(
                        "missing header {}: add it to WebhookHeaders in HAP's appextensions.json",
                        self.header
                    ),
                    n => format!("header {} was sent {n} times; send it once", self.header),
                },
            ));
        };
        // Check every token, so the time taken does not tell which one was close.
        let matched = self.tokens.iter().fold(0u8, |acc, t| {
            acc | given.as_bytes().ct_eq(t.as_bytes()).unwrap_u8()
        });
        if matched == 1 {
            Ok(())
        } else {
            Err(Rejection::Unauthorized(format!(
                "header {} does not match the configured token",
                self.header
            )))
        }
    }

    /// HAP signs nothing: the header token is its whole check, so `_verify` changes nothing.
    fn parse(
        &self,
        head: &Head,
        body: &[u8],
        now: Millis,
        verify: Verify,
    ) -> Result<Vec<Parsed>, Rejection> {
        self.read(head.path, body, now, verify).map(|p| vec![p])
    }

    /// Messages have `targets` or `message`; a finished to-do only ids.
    fn recognize(&self, body: &serde_json::Value) -> Option<&'static str> {
        body.get("messageId")?;
        if body.get("targets").is_some() || body.get("message").is_some() {
            Some(MESSAGE_PATH)
        } else {
            Some(TODO_PATH)
        }
    }

    fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String {
        match outcome {
            Ok(a) => json!({
                "success": true,
                "event": a.event,
                "duplicate": a.duplicate,
                "deliveries": a.deliveries,
            }),
            Err(r) => json!({ "success": false, "error": r.to_string() }),
        }
        .to_string()
    }
}

impl HapSource {
    /// The one event a request carries.
    fn read(
        &self,
        path: &str,
        body: &[u8],
        now: Millis,
        _verify: Verify,
    ) -> Result<Parsed, Rejection> {
        let raw = String::from_utf8_lossy(body).into_owned();
        if path == TODO_PATH {
            let finish: FinishTodo = decode(body, "HAP finish-to-do")?;
            let key = format!(
                "done#{}#{}",
                finish.message_id,
                finish.user().unwrap_or("*")
            );
            let payload = payload(&finish)?;
            return Ok(Parsed {
                notice: Some(finish.notice(now, payload.clone())),
                event: Event {
                    source: SOURCE.into(),
                    key,
                    kind: "todo_finished".into(),
                    received_at: now,
                    payload,
                    raw,
                },
            });
        }
        let msg: HapMessage = decode(body, "HAP message")?;
        let mut payload = payload(&msg)?;
        payload["kind"] = json!(msg.kind().as_str());
        Ok(Parsed {
            notice: Some(msg.notice(now, payload.clone())),
            event: Event {
                source: SOURCE.into(),
                key: msg.message_id.clone(),
                kind: msg.kind().as_str().into(),
                received_at: now,
                payload,
                raw,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn parse(path: &str, body: &str) -> Result<Parsed, Rejection> {
        HapSource::new("X-Hookbridge-Token", vec!["t".into()], 1024)
            .unwrap()
            .read(path, body.as_bytes(), 7, Verify::Yes)
    }

    /// The message as parsed, after `parse` accepted the body.
    fn message(body: &str) -> HapMessage {
        parse(MESSAGE_PATH, body).unwrap();
        decode(body.as_bytes(), "HAP message").unwrap()
    }

    #[test]
    fn guid_shaped_ids_are_hap_accounts() {
        assert!(looks_like_guid("3f2a9c1e-7b4d-4e6a-9f0c-1d2e3f4a5b6c"));
        assert!(!looks_like_guid("manager4220"));
        assert!(!looks_like_guid("3f2a9c1e-7b4d-4e6a-9f0c-1d2e3f4a5b6"));
        assert_eq!(
            own_accounts(["3f2a9c1e-7b4d-4e6a-9f0c-1d2e3f4a5b6c", "lisi"]),
            ["3f2a9c1e-7b4d-4e6a-9f0c-1d2e3f4a5b6c"]
        );
    }

    #[test]
    fn kind_prefers_v2_and_falls_back_to_legacy() {
        let m = message(r#"{"messageId":"a","messageType":14,"messageTypeV2":16}"#);
        assert_eq!(m.kind(), HapKind::WorkflowSystemRecorded);
        let m = message(r#"{"messageId":"a","messageType":"14"}"#);
        assert_eq!(m.kind(), HapKind::Todo);
        let m = message(r#"{"messageId":"a","messageTypeV2":99}"#);
        assert_eq!(m.kind(), HapKind::Unknown);
        let m = message(r#"{"messageId":"a","messageTypeV2":"x","messageType":12}"#);
        assert_eq!(
            m.kind(),
            HapKind::Mention,
            "an unreadable V2 counts as absent"
        );
    }

    #[test]
    fn targets_are_tolerant_and_deduplicated() {
        let m = message(r#"{"messageId":"a","targets":["u1"," u2 ",3,"u1","",null]}"#);
        assert_eq!(m.targets, ["u1", "u2", "3"]);
        let m = message(r#"{"messageId":"a","targets":"u1,u2, u1"}"#);
        assert_eq!(m.targets, ["u1", "u2"]);
    }

    #[test]
    fn attachments_split_at_the_first_pipe() {
        let m = message(
            r#"{"messageId":"a","attachments":["https://x/a.PNG?s=1|pic|1.png","https://x/doc","",null,"https://x/f|合同.pdf"]}"#,
        );
        let a = m.attachments();
        assert_eq!(a.len(), 3);
        assert_eq!(
            (a[0].link.as_str(), a[0].name.as_str()),
            ("https://x/a.PNG?s=1", "pic|1.png")
        );
        assert!(a[0].is_image());
        assert_eq!(
            (a[1].link.as_str(), a[1].name.as_str()),
            ("https://x/doc", "")
        );
        assert!(!a[2].is_image());
    }

    #[test]
    fn missing_optional_fields_default_and_unknown_fields_are_ignored() {
        let m = message(r#"{"messageId":42,"future":{"x":1},"processId":null}"#);
        assert_eq!(m.message_id, "42");
        assert_eq!(m.message, "");
        assert!(m.targets.is_empty() && m.attachments.is_empty());
        assert_eq!(m.process_id, "");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let cases = [
            ("", "not valid JSON"),
            ("{\"messageId\":", "not valid JSON"),
            ("[1,2]", "must be a JSON object, not an array"),
            ("\"hi\"", "not a string"),
            ("{}", "missing field `messageId`"),
            (r#"{"messageId":""}"#, "field messageId: must not be empty"),
            (
                r#"{"messageId":{"a":1}}"#,
                "field messageId: expected a string",
            ),
            (
                r#"{"messageId":"a","targets":{"u":1}}"#,
                "field targets: expected a list",
            ),
            (
                r#"{"messageId":"a","message":[1]}"#,
                "field message: expected a string",
            ),
        ];
        for (body, want) in cases {
            let err = parse(MESSAGE_PATH, body).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{body}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn finish_keys_on_message_and_user() {
        let p = parse(TODO_PATH, r#"{"messageId":"m","userId":"u"}"#).unwrap();
        assert_eq!(p.event.key, "done#m#u");
        let p = parse(TODO_PATH, r#"{"messageId":"m","accountId":"acc"}"#).unwrap();
        assert_eq!(p.event.key, "done#m#acc");
        let p = parse(TODO_PATH, r#"{"messageId":"m","userId":""}"#).unwrap();
        assert_eq!(p.event.key, "done#m#*");
        assert!(parse(TODO_PATH, r#"{"userId":"u"}"#).is_err());
    }

    #[test]
    fn the_notice_says_what_to_do_and_for_whom() {
        let todo = parse(
            MESSAGE_PATH,
            r#"{"messageId":"8d3e6f1a","messageTypeV2":14,"appName":"采购","redirectUrl":"https://hap/x","targets":["u1","u2"]}"#,
        )
        .unwrap()
        .notice
        .unwrap();
        assert_eq!(
            (todo.intent, todo.recipients, todo.foreign_ids),
            (
                Intent::Todo {
                    id: "8d3e6f1a".into(),
                    status: TodoStatus::default(),
                },
                vec!["u1".to_owned(), "u2".to_owned()],
                false
            )
        );
        assert_eq!(
            (todo.tag.as_str(), todo.link.as_deref()),
            ("#8d3e6f", Some("https://hap/x"))
        );
        assert_eq!(
            (
                &todo.fields["label"],
                &todo.fields["tag"],
                &todo.fields["appName"]
            ),
            (&json!("待办"), &json!("#8d3e6f"), &json!("采购"))
        );
        let mention = parse(MESSAGE_PATH, r#"{"messageId":"a","messageTypeV2":12}"#).unwrap();
        assert_eq!(mention.notice.unwrap().intent, Intent::Message);

        let done = parse(TODO_PATH, r#"{"messageId":"8d3e6f1a","userId":"u2"}"#)
            .unwrap()
            .notice
            .unwrap();
        assert_eq!(
            done.intent,
            Intent::Finish {
                todo_id: "8d3e6f1a".into(),
                todo_event: "EVT#hap#8d3e6f1a".into(),
                todo_kind: "todo",
                status: TodoStatus::default(),
            }
        );
        assert_eq!(done.recipients, ["u2"]);
        let for_all = parse(TODO_PATH, r#"{"messageId":"m"}"#)
            .unwrap()
            .notice
            .unwrap();
        assert!(for_all.recipients.is_empty());
    }

    #[test]
    fn auth_compares_every_token() {
        let s = HapSource::new("X-Token", vec!["old".into(), "new".into()], 10).unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-token", v.parse().unwrap());
            h
        };
        let auth = |headers: &HeaderMap| {
            s.authenticate(&Head {
                path: MESSAGE_PATH,
                headers,
                peer: None,
            })
        };
        assert!(auth(&with("new")).is_ok());
        assert!(auth(&with("old")).is_ok());
        let err = auth(&with("ne")).unwrap_err();
        assert!(err.to_string().contains("does not match"));
        let err = auth(&HeaderMap::new()).unwrap_err();
        assert!(err.to_string().contains("missing header x-token"));
    }
}
