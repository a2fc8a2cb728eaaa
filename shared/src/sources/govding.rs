//! 浙政钉 (Zhejiang government DingTalk) message-gateway callbacks: `POST /govding/<token>`.
//! As the gateway's message-interface page (developer portal) describes them.
//!
//! Callbacks are unsigned: the secret token in the registered `callbackUrl` is the
//! authentication (compared in constant time; a wrong one gets an empty 404), with an optional
//! source-IP allow-list. Every accepted request is answered `{"errcode":"0","errmsg":"成功"}`, a
//! body that cannot be read too: it is stored as it came (a retry would not fix it), and only a
//! body that could not be stored gets an error, so that the gateway retries.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::warn;

use super::{Accepted, AllowIps, Head, Parsed, Rejection, Source, SourcePart, Verify};
use super::{default_max_body, json as strict};
use crate::event::{Event, Millis};
use crate::logging::LogId;
use crate::notice::{Intent, Notice, Report};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::templates::Builtin;

const SOURCE: &str = "govding";
/// The connector that sends 浙政钉 work notifications, whose receipts these callbacks carry.
const SENDER: &str = "govding";
/// The webhook as shown to people; the last segment is the secret path token.
pub const PATH: &str = "/govding/{token}";
/// The stack output with the static-IP front's bases (template.yaml).
pub const CALLBACK_BASE_OUTPUT: &str = "GovDingCallbackBase";
const PREFIX: &str = "/govding/";

// ---- config: [sources.govding] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovDingConfig {
    /// The secret last segment of the registered callback URL, `…/govding/<token>`.
    pub path_token: SecretRef,
    /// Accept callbacks only from these addresses or CIDR ranges (the gateway's egress);
    /// empty: from any.
    #[serde(default)]
    pub allow_ips: AllowIps,
    /// Larger bodies are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

/// Every eventTag of the gateway's catalogue: the kind routes name, its class (which built-in text it
/// gets) and how readers see it.
const TAGS: &[(&str, &str, Class, &str)] = &[
    (
        "MOZI_VDS_TENANT_CHANGE|ORGANIZATION_ADD_UPDATE",
        "organization_add_update",
        Class::Contacts,
        "组织新增或更新",
    ),
    (
        "MOZI_VDS_TENANT_CHANGE|ORGANIZATION_PARENT_CHANGED",
        "organization_parent_changed",
        Class::Contacts,
        "组织调整上级",
    ),
    (
        "MOZI_VDS_TENANT_CHANGE|ORGANIZATION_REMOVE",
        "organization_remove",
        Class::Contacts,
        "组织删除",
    ),
    (
        "MOZI_VDS_TENANT_CHANGE|EMPLOYEE_ADD_UPDATE",
        "employee_add_update",
        Class::Contacts,
        "员工新增或更新",
    ),
    (
        "MOZI_VDS_TENANT_CHANGE|EMPLOYEE_LEAVE",
        "employee_leave",
        Class::Contacts,
        "员工离职或删除",
    ),
    (
        "MOZI_VDS_TENANT_CHANGE|ORGANIZATION_ATTACH_EMPLOYEE",
        "organization_attach_employee",
        Class::Contacts,
        "员工加入组织",
    ),
    (
        "MOZI_VDS_TENANT_CHANGE|ORGANIZATION_DETACH_EMPLOYEE",
        "organization_detach_employee",
        Class::Contacts,
        "员工移出组织",
    ),
    (
        "MOZI_BUC_ACCOUNT_MODIFY_REALM|change_account_name",
        "account_renamed",
        Class::Account,
        "账号改名",
    ),
    (
        "MOZI_BUC_ACCOUNT_MODIFY_REALM|frozen",
        "account_frozen",
        Class::Account,
        "账号冻结",
    ),
    (
        "MOZI_BUC_ACCOUNT_MODIFY_REALM|unfrozen",
        "account_unfrozen",
        Class::Account,
        "账号解冻",
    ),
    (
        "openplatform_app_update|openplatform_app_update_tag",
        "app_updated",
        Class::App,
        "应用更新",
    ),
    (
        "notification_send_event|SendSuccessMsg",
        "notification_sent",
        Class::Receipt,
        "通知已发送",
    ),
    (
        "notification_client_ack|SuccessAcceptMsg",
        "notification_received",
        Class::Receipt,
        "通知已送达",
    ),
    (
        "notification_client_ack|nc-outBound-msg_pushed",
        "notification_pushed",
        Class::Receipt,
        "通知已推送",
    ),
    (
        "notification_client_ack|nc-outBound-msg_fail",
        "notification_failed",
        Class::Failure,
        "通知发送失败",
    ),
    (
        "notification_client_ack|nc-outBound-msg_revoked",
        "notification_revoked",
        Class::Receipt,
        "通知已撤回",
    ),
    (
        "notification_client_ack|nc-outBound-msg_read",
        "notification_read",
        Class::Receipt,
        "通知已读",
    ),
    (
        "ding_create_event|FAILED_ACCOUNT_ID",
        "ding_failed",
        Class::Failure,
        "DING 发送失败",
    ),
];

/// Every eventTag hookbridge reads, to register with the gateway.
pub fn event_tags() -> impl Iterator<Item = &'static str> {
    TAGS.iter().map(|(tag, ..)| *tag)
}

/// The callback URL to register: `base` (`http://<IP>:<port>`) and the path token.
pub fn callback_url(base: &str, token: &str) -> String {
    format!("{}{PREFIX}{token}", base.trim_end_matches('/'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Contacts,
    Account,
    App,
    /// Bookkeeping about a message hookbridge sent: delivered only to routes that name it.
    Receipt,
    /// A message or DING that did not reach someone: operators should hear of it.
    Failure,
    Other,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Class::Contacts => "contacts",
            Class::Account => "account",
            Class::App => "app",
            Class::Receipt => "receipt",
            Class::Failure => "failure",
            Class::Other => "other",
        }
    }
}

pub struct GovDingSource {
    token: String,
    allow: AllowIps,
    max_body_bytes: usize,
}

impl GovDingSource {
    pub fn new(token: String, allow: AllowIps, max_body_bytes: usize) -> Result<Self, ConfigError> {
        if token.len() < 16
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::Invalid(
                "sources.govding.path_token must be at least 16 letters, digits, - or _ (it is the callback's only secret)".into(),
            ));
        }
        Ok(GovDingSource {
            token,
            allow,
            max_body_bytes,
        })
    }
}

#[async_trait]
impl SourcePart for GovDingSource {
    type Config = GovDingConfig;
    const TEMPLATE: Builtin = Builtin {
        title: "【浙政钉】{{ label }}",
        text: "{% if class == \"contacts\" %}租户 {{ tenantId }}\
{% if organizationCodes %}；组织 {{ organizationCodes | join(\"、\") }}{% endif %}\
{% if employeeCodes %}；员工 {{ employeeCodes | join(\"、\") }}{% endif %}\
{% elif class == \"account\" %}账号 {{ account }}（{{ accountId }}）{% if employeeCode %}，员工 {{ employeeCode }}{% endif %}\
{% elif class == \"app\" %}应用 {{ appName }} 已更新\
{% elif bizMsgId %}消息 {{ bizMsgId }}{% if receivers %}，接收人 {{ receivers | join(\"、\") }}{% endif %}\
{% elif accountId %}用户 {{ accountId }}\
{% else %}{{ eventTag }}{% endif %}",
    };

    async fn build(
        config: &GovDingConfig,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Source>, ConfigError> {
        let token = secrets.resolve(&config.path_token).await?;
        let source = GovDingSource::new(token, config.allow_ips.clone(), config.max_body_bytes)?;
        Ok(Arc::new(source))
    }

    /// The callback URL on the stack's static-IP front (the gateway takes IP-address URLs
    /// only), and the command that registers it.
    #[cfg(feature = "cli")]
    async fn setup(
        source: &GovDingConfig,
        at: &crate::tools::Deployment,
    ) -> Result<String, crate::tools::ToolError> {
        let token = at.secret(&source.path_token).await?;
        let bases = at.bases(CALLBACK_BASE_OUTPUT);
        let Some(base) = bases.first() else {
            return Err(
                "the stack has no static-IP front (GovDingCallbackBase): the 浙政钉 gateway \
                 takes IP-address callback URLs only; deploy with GovDingFrontVpcId and two \
                 public subnets, or give --url http://<IP address>"
                    .into(),
            );
        };
        let mut out = String::from("The 浙政钉 gateway calls back at\n\n");
        for b in &bases {
            out.push_str(&format!("  {}\n", callback_url(b, &token)));
        }
        out.push_str(&format!(
            "\nRegister it for every eventTag hookbridge reads (the gateway checks that it answers):\n\n  \
             hookbridge govding --config {} register --callback-base {base}\n",
            at.config_file.display()
        ));
        Ok(out)
    }
}

impl Source for GovDingSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn credentials(&self) -> String {
        let from = if self.allow.is_empty() {
            String::new()
        } else {
            format!(", from {} only", self.allow.len())
        };
        format!("the path_token as the URL's last part, on an IP-address URL{from}")
    }

    fn paths(&self) -> &'static [&'static str] {
        &[PATH]
    }

    /// Every path under `/govding/`: the token is checked in `authenticate`, so that a wrong
    /// one is answered like a path that does not exist, in constant time.
    fn endpoint(&self, path: &str) -> Option<&'static str> {
        path.starts_with(PREFIX).then_some(PATH)
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The gateway's header says form-encoded, its bodies are JSON: the body decides.
    fn strict_content_type(&self) -> bool {
        false
    }

    fn authenticate(&self, head: &Head) -> Result<(), Rejection> {
        let given = head.path.strip_prefix(PREFIX).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(self.token.as_bytes())) {
            return Err(Rejection::NotFound);
        }
        if !self.allow.permits(head.peer) {
            // Answered like a wrong token: the log, not the caller, learns which it was.
            warn!(peer = ?head.peer, allowed = %self.allow, "a callback from outside sources.govding.allow_ips");
            return Err(Rejection::NotFound);
        }
        Ok(())
    }

    /// Never rejects a body: what cannot be read is stored as it came and acknowledged.
    fn parse(
        &self,
        head: &Head,
        body: &[u8],
        now: Millis,
        verify: Verify,
    ) -> Result<Vec<Parsed>, Rejection> {
        self.read(head.path, body, now, verify).map(|p| vec![p])
    }

    fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String {
        match outcome {
            Ok(_) => r#"{"errcode":"0","errmsg":"成功"}"#.to_owned(),
            Err(Rejection::NotFound) => String::new(),
            Err(r) => json!({ "errcode": "1", "errmsg": r.to_string() }).to_string(),
        }
    }

    fn recognize(&self, body: &Value) -> Option<&'static str> {
        body.get("dispatchId").map(|_| PATH)
    }
}

impl GovDingSource {
    /// The one event a request carries.
    fn read(&self, _path: &str, body: &[u8], now: Millis, _: Verify) -> Result<Parsed, Rejection> {
        let raw = String::from_utf8_lossy(body).into_owned();
        let Some(fields) = read_body(body) else {
            let shown: String = raw.chars().take(512).collect();
            warn!(body = %LogId(&shown), "a 浙政钉 callback that cannot be read; stored and acknowledged");
            return Ok(Parsed {
                event: event(hash(&[&raw]), "unreadable", now, Value::Null, raw),
                notice: None,
            });
        };
        let content = fields.get("content").cloned();
        let dispatch = text(fields.get("dispatchId"));
        let tag = event_tag(&fields, content.as_ref());
        // The registration's connectivity check: recorded, acknowledged, nothing delivered. A
        // callback whose data is only in `infos` is an event, not a check.
        let infos = fields.get("infos");
        if content.is_none()
            && infos.is_none()
            && fields.contains_key("eventTag")
            && !dispatch.is_empty()
        {
            let payload = json!({ "eventTag": tag, "dispatchId": dispatch });
            return Ok(Parsed {
                event: event(hash(&[&dispatch, &tag]), "check", now, payload, raw),
                notice: None,
            });
        }
        let canonical = match content.as_ref().or(infos) {
            Some(Value::String(s)) => s.clone(),
            Some(c) => strict::canonical(&c.to_string()).unwrap_or_else(|_| c.to_string()),
            None => String::new(),
        };
        let key = hash(&[&dispatch, &tag, &canonical]);
        let (kind, class, label) = TAGS
            .iter()
            .find(|(t, ..)| *t == tag)
            .map_or(("unknown", Class::Other, tag.as_str()), |(_, k, c, l)| {
                (*k, *c, *l)
            });
        let payload = normalize(&fields, content.as_ref(), &tag, kind, class, label);
        let time = ["eventTime", "TimeStamp", "successTime", "ackTime"]
            .iter()
            .find_map(|k| millis(content.as_ref().and_then(|c| c.get(k))))
            .unwrap_or(now);
        // Reports about a message hookbridge sent go back to the connector that sent it, and
        // so do changed employees, whose accountIds it may have cached.
        let biz_msg_id = text(content.as_ref().and_then(|c| c.get("bizMsgId")));
        let mut employees = list(payload.get("employeeCodes"));
        employees.extend(list(payload.get("employeeCode")));
        let intent = match class {
            Class::Receipt | Class::Failure if !biz_msg_id.is_empty() => Intent::Receipt {
                connector: SENDER,
                reference: biz_msg_id,
                report: Report {
                    status: kind.strip_prefix("notification_").unwrap_or(kind).into(),
                    concerns: list(payload.get("receivers")),
                    message_type: text(payload.get("msgType")),
                    app: text(payload.get("msgApp")),
                },
            },
            Class::Contacts | Class::Account if !employees.is_empty() => Intent::Changed {
                connector: SENDER,
                ids: employees,
            },
            _ => Intent::Message,
        };
        let notice = Notice {
            quiet: class == Class::Receipt,
            ..Notice::new("浙政钉", intent, &key, time, payload.clone())
        };
        Ok(Parsed {
            event: event(key, kind, now, payload, raw),
            notice: Some(notice),
        })
    }
}

fn event(key: String, kind: &str, now: Millis, payload: Value, raw: String) -> Event {
    Event {
        source: SOURCE.into(),
        key,
        kind: kind.into(),
        received_at: now,
        payload,
        raw,
    }
}

/// Hex SHA-256 of the parts joined by `|` (`dispatchId` alone is not unique: redeliveries
/// collapse, distinct events differ in content even when the gateway reuses a `dispatchId`).
fn hash(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("|").as_bytes());
    hex::encode(digest)
}

/// The body's fields, from JSON (when it starts with `{`) or a form whose `content` and
/// `infos` carry JSON (the gateway's header says form, its examples are JSON). `None`: not
/// readable; a key sent twice counts as that, since which one the gateway meant cannot be
/// known.
fn read_body(body: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let mut fields = if text.starts_with('{') {
        strict::check(text.as_bytes()).ok()?;
        match serde_json::from_str(text).ok()? {
            Value::Object(m) => m,
            _ => return None,
        }
    } else {
        let mut m = Map::new();
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            if m.insert(k.into_owned(), Value::String(v.into_owned()))
                .is_some()
            {
                return None;
            }
        }
        m
    };
    for key in ["content", "infos"] {
        if let Some(Value::String(s)) = fields.get(key)
            && (s.starts_with('{') || s.starts_with('['))
            && strict::check(s.as_bytes()).is_ok()
            && let Ok(v) = serde_json::from_str::<Value>(s)
        {
            fields.insert(key.into(), v);
        }
    }
    // A form carrying the whole body as one JSON field.
    if !fields.contains_key("dispatchId") && fields.len() == 1 {
        let (k, v) = fields.iter().next()?;
        let nested = match v {
            Value::String(s) if !s.is_empty() => s.as_str(),
            _ => k.as_str(),
        };
        if let Ok(Value::Object(m)) = serde_json::from_str(nested) {
            return Some(m);
        }
    }
    // Not a callback unless it carries one of the gateway's fields.
    ["dispatchId", "eventTag", "content"]
        .iter()
        .any(|k| fields.contains_key(*k))
        .then_some(fields)
}

/// `eventTag`, else `content.eventTag`, else `content.topic|content.tag` (the vendor page's
/// callbacks carry no top-level tag, its connectivity check does).
fn event_tag(fields: &Map<String, Value>, content: Option<&Value>) -> String {
    let top = text(fields.get("eventTag"));
    if !top.is_empty() {
        return top;
    }
    let inner = text(content.and_then(|c| c.get("eventTag")));
    if !inner.is_empty() {
        return inner;
    }
    let topic = text(content.and_then(|c| c.get("topic")));
    let tag = text(content.and_then(|c| c.get("tag")));
    if topic.is_empty() {
        "unknown".into()
    } else {
        format!("{topic}|{tag}")
    }
}

/// What routes and templates see: the tag's parts and class, and the content's fields under
/// one spelling each (ids as text, code lists as lists); `content` as it came, too.
fn normalize(
    fields: &Map<String, Value>,
    content: Option<&Value>,
    tag: &str,
    kind: &str,
    class: Class,
    label: &str,
) -> Value {
    let get = |names: &[&str]| names.iter().find_map(|n| content.and_then(|c| c.get(*n)));
    // Attach and detach events may carry their people only in `infos`, a list (or one) of
    // `{employeeCode, organizationCode}`.
    let infos: Vec<&Value> = match fields.get("infos") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => vec![],
    };
    let codes = |names: &[&str], info_key: &str| {
        let found = list(get(names));
        if !found.is_empty() {
            return found;
        }
        let from_infos = infos.iter().map(|i| text(i.get(info_key)));
        from_infos.filter(|c| !c.is_empty()).collect()
    };
    let (topic, sub) = tag.split_once('|').unwrap_or((tag, ""));
    json!({
        "eventTag": tag,
        "topic": topic,
        "tag": sub,
        "kind": kind,
        "class": class.as_str(),
        "label": label,
        "dispatchId": text(fields.get("dispatchId")),
        "tenantId": text(get(&["tenantId", "RealmId", "realmId"])),
        "organizationCodes": codes(&["organizationCodes"], "organizationCode"),
        "employeeCodes": codes(&["employeeCodes"], "employeeCode"),
        "employeeCode": text(get(&["EmployeeCode", "employeeCode"])),
        "account": text(get(&["Account"])),
        "accountId": text(get(&["AccountId", "accountId"])),
        "appName": text(get(&["appName"])),
        "bizMsgId": text(get(&["bizMsgId"])),
        "msgId": text(get(&["msgId"])),
        "msgType": text(get(&["msgType"])),
        "msgApp": text(get(&["msgApp"])),
        "receivers": list(get(&["receivers"])),
        "infos": fields.get("infos").cloned().unwrap_or(Value::Null),
        "content": content.cloned().unwrap_or(Value::Null),
    })
}

/// A string, or a number as its text; anything else is empty.
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A JSON list or a comma-separated string, as a list of texts.
fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| text(Some(i)))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        _ => vec![],
    }
}

/// Epoch milliseconds, as a number or numeric text.
fn millis(v: Option<&Value>) -> Option<Millis> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    const TOKEN: &str = "t0ken-0123456789abcdef";
    const LEAVE: &str = include_str!("../../../tests/fixtures/govding-employee-leave.json");
    const READ: &str = include_str!("../../../tests/fixtures/govding-notification-read.json");
    const CHECK: &str = include_str!("../../../tests/fixtures/govding-register-check.json");

    fn source() -> GovDingSource {
        GovDingSource::new(TOKEN.into(), AllowIps::default(), 1 << 20).unwrap()
    }

    fn parse(body: &str) -> Parsed {
        source()
            .read(PATH, body.as_bytes(), 7, Verify::Yes)
            .unwrap()
    }

    #[test]
    fn both_encodings_read_the_same() {
        let forms = [
            include_str!("../../../tests/fixtures/govding-employee-leave.form"),
            include_str!("../../../tests/fixtures/govding-notification-read.form"),
            include_str!("../../../tests/fixtures/govding-register-check.form"),
        ];
        for (body, form) in [LEAVE, READ, CHECK].into_iter().zip(forms) {
            assert!(!form.trim_start().starts_with('{'));
            let (json, form) = (parse(body), parse(form));
            assert_eq!(json.event.key, form.event.key, "{body}");
            assert_eq!(json.event.payload, form.event.payload, "{body}");
            assert_eq!(json.notice, form.notice, "{body}");
        }
    }

    #[test]
    fn the_connectivity_check_is_stored_and_delivers_nothing() {
        let p = parse(CHECK);
        assert_eq!(p.event.kind, "check");
        assert!(p.notice.is_none());
        let accepted = Accepted {
            event: p.event.pk(),
            events: 1,
            duplicate: false,
            deliveries: 0,
        };
        assert_eq!(
            source().reply(Ok(&accepted)),
            r#"{"errcode":"0","errmsg":"成功"}"#
        );
    }

    #[test]
    fn what_was_not_stored_is_answered_so_that_the_gateway_retries() {
        let r = Rejection::Unavailable {
            request_id: "req-1".into(),
        };
        let body: Value = serde_json::from_str(&source().reply(Err(&r))).unwrap();
        assert_eq!(
            body["errcode"], "1",
            "anything but the success body makes it retry"
        );
        assert!(body["errmsg"].as_str().unwrap().contains("req-1"));
        assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn an_event_has_its_kind_class_and_fields() {
        let p = parse(LEAVE);
        assert_eq!(p.event.kind, "employee_leave");
        let f = &p.event.payload;
        assert_eq!(f["class"], "contacts");
        assert_eq!(f["tenantId"], "196729", "a number becomes text");
        assert_eq!(
            f["employeeCodes"],
            json!(["GE_3a5c7e9b1d2f4a6c8e0b2d4f6a8c0e1b"])
        );
        let n = p.notice.unwrap();
        assert!(!n.quiet && n.recipients.is_empty());
        assert_eq!(
            n.intent,
            Intent::Changed {
                connector: "govding",
                ids: vec!["GE_3a5c7e9b1d2f4a6c8e0b2d4f6a8c0e1b".into()]
            },
            "a cached accountId of this employee may be stale"
        );
        assert_eq!(n.fields["label"], "员工离职或删除");

        // An attach event whose people are only in `infos`, as a form field of JSON.
        let body = "dispatchId=d-9&eventTag=MOZI_VDS_TENANT_CHANGE%7CORGANIZATION_ATTACH_EMPLOYEE&\
            infos=%5B%7B%22employeeCode%22%3A%22GE_a%22%2C%22organizationCode%22%3A%22GO_1%22%7D%2C\
            %7B%22employeeCode%22%3A%22GE_b%22%2C%22organizationCode%22%3A%22GO_1%22%7D%5D";
        let attach = parse(body);
        assert_eq!(
            attach.event.kind, "organization_attach_employee",
            "not a check"
        );
        let f = attach.event.payload;
        assert_eq!(f["employeeCodes"], json!(["GE_a", "GE_b"]));
        assert_eq!(f["organizationCodes"], json!(["GO_1", "GO_1"]));

        let read = parse(READ);
        assert_eq!(read.event.kind, "notification_read");
        assert_eq!(
            read.event.payload["bizMsgId"],
            "hb-7f3a9c01e2d4b6a8c0e1f3a5"
        );
        assert!(
            read.notice.unwrap().quiet,
            "receipts go only to routes that name them"
        );
    }

    #[test]
    fn every_catalogued_tag_and_an_unknown_one() {
        for (tag, kind, class, _) in TAGS {
            let body = json!({ "dispatchId": "d", "eventTag": tag, "content": { "tenantId": 1 } });
            let p = parse(&body.to_string());
            assert_eq!(
                (p.event.kind.as_str(), p.event.payload["class"].as_str()),
                (*kind, Some(class.as_str()))
            );
            let quiet = p.notice.unwrap().quiet;
            assert_eq!(quiet, *class == Class::Receipt, "{tag}");
        }
        let odd = parse(r#"{"dispatchId":"d","content":{"topic":"new_topic","tag":"x","n":1}}"#);
        assert_eq!(
            (
                odd.event.kind.as_str(),
                odd.event.payload["eventTag"].as_str()
            ),
            ("unknown", Some("new_topic|x"))
        );
        assert!(odd.notice.is_some(), "delivered as a generic event");
    }

    #[test]
    fn lists_may_be_comma_strings_and_content_may_be_text() {
        let p = parse(
            r#"{"dispatchId":"d","eventTag":"MOZI_VDS_TENANT_CHANGE|EMPLOYEE_ADD_UPDATE","content":"{\"tenantId\":\"5\",\"employeeCodes\":\"GE_1, GE_2\"}"}"#,
        );
        assert_eq!(p.event.payload["employeeCodes"], json!(["GE_1", "GE_2"]));
        assert_eq!(p.event.payload["tenantId"], "5");
    }

    #[test]
    fn retries_collapse_and_distinct_events_do_not() {
        let again = parse(&LEAVE.replace("\n", " "));
        assert_eq!(
            parse(LEAVE).event.key,
            again.event.key,
            "formatting does not matter"
        );
        let other = parse(&LEAVE.replace("GE_3a5c", "GE_9999"));
        assert_ne!(
            parse(LEAVE).event.key,
            other.event.key,
            "same dispatchId, other content"
        );
        assert_ne!(parse(CHECK).event.key, parse(LEAVE).event.key);
    }

    #[test]
    fn unreadable_bodies_are_stored_not_refused() {
        for body in [
            "",
            "garbage",
            "[1,2]",
            r#"{"a":1,"a":2}"#,
            "{\"dispatchId\":",
            "a=1&a=2",
        ] {
            let p = parse(body);
            assert_eq!(p.event.kind, "unreadable", "{body:?}");
            assert!(p.notice.is_none());
        }
    }

    #[test]
    fn the_path_token_and_the_allow_list_guard_the_door() {
        let headers = HeaderMap::new();
        let head = |path, peer: Option<&str>| Head {
            path,
            headers: &headers,
            peer: peer.map(|p| p.parse().unwrap()),
        };
        let open = source();
        let good = format!("{PREFIX}{TOKEN}");
        assert!(open.authenticate(&head(&good, None)).is_ok());
        for bad in [
            "/govding/",
            "/govding/t0ken",
            "/govding/t0ken-0123456789abcdeF",
        ] {
            assert_eq!(
                open.authenticate(&head(bad, None)),
                Err(Rejection::NotFound)
            );
        }
        assert_eq!(open.endpoint("/govding/anything"), Some(PATH));
        assert_eq!(open.reply(Err(&Rejection::NotFound)), "");

        let fenced = GovDingSource::new(
            TOKEN.into(),
            vec!["203.0.113.7".parse().unwrap()].into(),
            1024,
        )
        .unwrap();
        assert!(
            fenced
                .authenticate(&head(&good, Some("203.0.113.7")))
                .is_ok()
        );
        for outside in [Some("198.51.100.1"), None] {
            assert_eq!(
                fenced.authenticate(&head(&good, outside)),
                Err(Rejection::NotFound),
                "answered like a wrong token, with nothing of the caller's address"
            );
        }
        assert!(GovDingSource::new("short".into(), AllowIps::default(), 1).is_err());
    }
}
