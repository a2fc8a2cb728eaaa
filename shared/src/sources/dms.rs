//! Alibaba Cloud DMS custom webhook (自定义Webhook通知): `POST /dms`.
//!
//! DMS signs `signatureText` = Base64(HMAC-SHA1) over "the webhook address, the password and
//! the message event", but the exact construction is not published. So every known candidate
//! ([`constructions`]) is tried in constant time, the one that matched is logged, and config can
//! pin it once known; `hookbridge dms verify` settles it from one captured request.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use super::{Accepted, Head, Parsed, Rejection, Source, SourcePart, Verify};
use super::{decode, default_max_body, json as strict, lenient, payload};
use crate::event::{Event, Millis, beijing};
use crate::notice::{Intent, Notice};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::templates::Builtin;

pub const PATH: &str = "/dms";

/// `taskName` of the message the DMS console's Test button sends (it has no `taskId`).
const TEST_TASK_NAME: &str = "Webhook test";

// ---- config: [sources.dms] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmsConfig {
    /// The 签名密钥 set in DMS next to 签名方式 HMAC_SHA1.
    pub signature_key: Option<SecretRef>,
    /// `off`, `log` or `enforce`; default `enforce` when a key is set, else `off`.
    pub signature_mode: Option<SignatureMode>,
    /// Accept only this construction (as `hookbridge dms verify` names it), once known.
    pub signature_variant: Option<String>,
    /// The webhook URL exactly as entered in DMS (some constructions sign it).
    pub webhook_url: Option<String>,
    /// HTTP Basic credentials, for a webhook URL of the form `https://user:password@host/dms`.
    pub basic_auth: Option<BasicAuth>,
    /// Larger bodies are answered 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Deliver the console's Test button message too (default: acknowledge it only).
    #[serde(default)]
    pub forward_test: bool,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name DMS sends in HTTP Basic auth.
    pub user: String,
    pub password: SecretRef,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureMode {
    /// Never computed.
    Off,
    /// Computed and logged, never rejects (to find the construction at setup time).
    Log,
    /// A signed request must match; an unsigned one is rejected too, because a key is set.
    #[default]
    Enforce,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmsUser {
    #[serde(default, deserialize_with = "lenient::string")]
    pub uid: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
}

/// `messageEvent`, normalized. `category`/`module`/`event` are localized display strings
/// (工单/工單/Ticket…): they are carried as text for routes to match, never used as keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DmsEvent {
    #[serde(default, deserialize_with = "lenient::string")]
    pub submitter_uid: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub submitter_name: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub category: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub module: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub event: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub task_id: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub task_name: String,
    #[serde(default, deserialize_with = "event_time")]
    pub event_time: Option<Millis>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub message: String,
    #[serde(default, deserialize_with = "users")]
    pub target_users: Vec<DmsUser>,
    #[serde(default, deserialize_with = "users")]
    pub receivers: Vec<DmsUser>,
}

impl DmsEvent {
    /// The Test button's message: answer success, deliver nothing unless asked to.
    pub fn is_test(&self) -> bool {
        self.task_name == TEST_TASK_NAME && self.task_id.is_empty()
    }

    /// The notice this event makes; `key` is its stored key, `fields` what templates see.
    fn notice(&self, key: &str, received_at: Millis, fields: Value) -> Notice {
        let task = match (self.task_name.as_str(), self.task_id.as_str()) {
            ("", "") => None,
            (name, "") => Some(format!("任务：{name}")),
            ("", id) => Some(format!("工单号：{id}")),
            (name, id) => Some(format!("任务：{name}（{id}）")),
        };
        let submitter =
            (!self.submitter_name.is_empty()).then(|| format!("提交人：{}", self.submitter_name));
        let time = self.event_time.unwrap_or(received_at);
        Notice {
            recipients: self.recipients().iter().map(|u| u.uid.clone()).collect(),
            foreign_ids: true,
            details: task.into_iter().chain(submitter).collect(),
            ..Notice::new("DMS", Intent::Message, key, time, fields)
        }
    }

    /// Who should read it: the actual `receivers`, or the intended `targetUsers` when empty.
    pub fn recipients(&self) -> &[DmsUser] {
        if self.receivers.is_empty() {
            &self.target_users
        } else {
            &self.receivers
        }
    }
}

/// A DMS body read once: the exact bytes of `messageEvent`, which are what DMS signs and what
/// is parsed and delivered, and the signature fields as sent.
pub struct Envelope<'a> {
    event: &'a RawValue,
    method: Option<&'a RawValue>,
    text: Option<&'a RawValue>,
}

/// What is wrong with a DMS body as read, before any signature is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Json(#[from] strict::JsonError),
    #[error("body must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("missing field `messageEvent`")]
    NoEvent,
    #[error("messageEvent must be a JSON object, not {0}")]
    EventNotAnObject(&'static str),
    #[error("{field} must be a string, not {kind}")]
    NotAString {
        field: &'static str,
        kind: &'static str,
    },
    #[error("{field}: {reason}")]
    BadString { field: &'static str, reason: String },
}

impl<'a> Envelope<'a> {
    /// Reads the body strictly (see [`strict`]): one JSON object, no key twice anywhere, and a
    /// `messageEvent` that is an object. The error says what is wrong.
    pub fn read(body: &'a [u8]) -> Result<Self, EnvelopeError> {
        strict::check(body)?;
        let kind = strict::kind_of(body);
        if kind != "an object" {
            return Err(EnvelopeError::NotAnObject(kind));
        }
        let members = strict::members(body)?;
        let event = *members.get("messageEvent").ok_or(EnvelopeError::NoEvent)?;
        if !event.get().starts_with('{') {
            return Err(EnvelopeError::EventNotAnObject(strict::kind_of(
                event.get().as_bytes(),
            )));
        }
        Ok(Envelope {
            event,
            method: members.get("signatureMethod").copied(),
            text: members.get("signatureText").copied(),
        })
    }

    /// `messageEvent` exactly as received.
    pub fn event_json(&self) -> &'a str {
        self.event.get()
    }

    /// `signatureText`: absent or null is `None`; any type but a string is an error.
    pub fn signature_text(&self) -> Result<Option<String>, EnvelopeError> {
        text_field(self.text, "signatureText")
    }

    fn signature_method(&self) -> Result<Option<String>, EnvelopeError> {
        text_field(self.method, "signatureMethod")
    }
}

fn text_field(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(t) if t.starts_with('"') => {
            serde_json::from_str(t)
                .map(Some)
                .map_err(|e| EnvelopeError::BadString {
                    field,
                    reason: e.to_string(),
                })
        }
        Some(t) => Err(EnvelopeError::NotAString {
            field,
            kind: strict::kind_of(t.as_bytes()),
        }),
    }
}

fn users<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DmsUser>, D::Error> {
    Ok(Option::<Vec<DmsUser>>::deserialize(d)?.unwrap_or_default())
}

/// Epoch milliseconds as a number, a numeric string (10 digits: seconds, 13: milliseconds) or
/// a `yyyy-MM-dd HH:mm:ss` date in Beijing time.
fn event_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    use serde::de::Error;
    let fail =
        || D::Error::custom("expected epoch milliseconds, a numeric string or yyyy-MM-dd HH:mm:ss");
    let from_digits = |n: i64, digits: usize| if digits <= 10 { n * 1000 } else { n };
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(|n| Some(from_digits(n, n.to_string().len())))
            .ok_or_else(fail),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                return Ok(Some(from_digits(n, s.len())));
            }
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .and_then(|t| t.and_local_timezone(beijing()).single())
                .map(|t| Some(t.timestamp_millis()))
                .ok_or_else(fail)
        }
        _ => Err(fail()),
    }
}

// ---- signature candidates ----

/// One way DMS may have built its signature: a name (`A/raw`, `B/sorted/url`…), the HMAC key
/// and the signed message.
pub struct Construction {
    pub name: String,
    key: Vec<u8>,
    message: Vec<u8>,
}

/// Every candidate construction: variants A–F over the event JSON forms (`raw`
/// bytes, `sorted` compact, `ordered` compact, each also `-esc` with non-ASCII as `\uXXXX`) and
/// the URL forms (`url` as configured, `url-no-query`, `url-no-userinfo`).
pub fn constructions(raw_event: &str, secret: &str, url: Option<&str>) -> Vec<Construction> {
    let sorted = strict::canonical(raw_event).unwrap_or_default();
    let ordered = minify(raw_event);
    let forms = [
        ("raw", raw_event.to_owned()),
        ("sorted-esc", escape_non_ascii(&sorted)),
        ("ordered-esc", escape_non_ascii(&ordered)),
        ("sorted", sorted),
        ("ordered", ordered),
    ];
    let urls = url.map(url_forms).unwrap_or_default();
    let mut out = vec![];
    let mut add = |name: String, key: String, message: String| {
        out.push(Construction {
            name,
            key: key.into_bytes(),
            message: message.into_bytes(),
        });
    };
    for (form, json) in &forms {
        add(format!("A/{form}"), secret.to_owned(), json.clone());
        for (u, url) in &urls {
            add(
                format!("B/{form}/{u}"),
                secret.to_owned(),
                format!("{url}{json}"),
            );
            add(
                format!("C/{form}/{u}"),
                format!("{url}{secret}"),
                json.clone(),
            );
            add(
                format!("D/{form}/{u}"),
                secret.to_owned(),
                format!("{json}{url}"),
            );
            add(
                format!("E/{form}/{u}"),
                secret.to_owned(),
                format!("{url}\n{json}"),
            );
        }
    }
    for (u, url) in &urls {
        add(format!("F/{u}"), secret.to_owned(), url.clone());
    }
    out
}

/// The names of the constructions that produce `signature` (Base64), in constant time each.
pub fn matching(raw_event: &str, secret: &str, url: Option<&str>, signature: &str) -> Vec<String> {
    let Ok(expected) = BASE64.decode(signature.trim()) else {
        return vec![];
    };
    constructions(raw_event, secret, url)
        .into_iter()
        .filter(|c| {
            <Hmac<Sha1> as KeyInit>::new_from_slice(&c.key)
                .map(|mut mac| {
                    mac.update(&c.message);
                    mac.verify_slice(&expected).is_ok()
                })
                .unwrap_or(false)
        })
        .map(|c| c.name)
        .collect()
}

fn url_forms(url: &str) -> Vec<(&'static str, String)> {
    let no_query = url.split(['?', '#']).next().unwrap_or(url).to_owned();
    let no_userinfo = match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p)) {
            (host, path) if host.contains('@') => {
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let sep = if rest.contains('/') { "/" } else { "" };
                format!("{scheme}://{host}{sep}{path}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    };
    let mut out = vec![("url", url.to_owned())];
    for (name, u) in [("url-no-query", no_query), ("url-no-userinfo", no_userinfo)] {
        if !out.iter().any(|(_, o)| *o == u) {
            out.push((name, u));
        }
    }
    out
}

/// JSON without the whitespace between tokens, keys in the order received.
fn minify(json: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(json.len()), false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Non-ASCII characters as `\uXXXX` (UTF-16, lowercase hex, like Java's and Python's encoders).
/// Outside strings JSON is ASCII, so escaping every such character is exact.
fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

// ---- the source ----

pub struct SignatureCheck {
    pub key: String,
    pub mode: SignatureMode,
    /// The webhook URL exactly as configured in DMS (candidates B–F sign it).
    pub url: Option<String>,
    /// Only this construction is accepted, once known.
    pub pinned: Option<String>,
}

impl SignatureCheck {
    /// A request that does not verify: refused when enforcing, logged either way.
    fn failed(&self, reason: String) -> Result<(), Rejection> {
        warn!(%reason, "DMS signature check failed");
        match self.mode {
            SignatureMode::Enforce => Err(Rejection::Unauthorized(reason)),
            _ => Ok(()),
        }
    }

    /// Checks the signature over the envelope's own `messageEvent` bytes.
    fn verify(&self, envelope: &Envelope) -> Result<(), Rejection> {
        let (method, text) = match (envelope.signature_method(), envelope.signature_text()) {
            (Ok(m), Ok(t)) => (m.unwrap_or_default(), t.unwrap_or_default()),
            (Err(e), _) | (_, Err(e)) => {
                return self.failed(format!("the body cannot be verified: {e}"));
            }
        };
        match method.trim().to_ascii_uppercase().as_str() {
            "" | "NONE" => {
                return self.failed(
                    "the request is not signed (signatureMethod None), but sources.dms.signature_key is set: \
                     choose HMAC_SHA1 as 签名方式 in DMS, or remove the key"
                        .into(),
                );
            }
            "HMAC_SHA1" => {}
            other => {
                let other: String = other.chars().take(32).collect();
                return self.failed(format!(
                    "signatureMethod {other:?} is not supported (HMAC_SHA1 or None)"
                ));
            }
        }
        let found = matching(envelope.event_json(), &self.key, self.url.as_deref(), &text);
        let accepted = match &self.pinned {
            Some(p) => found.iter().find(|f| *f == p),
            None => found.first(),
        };
        match accepted {
            Some(name) => {
                info!(construction = %name, "DMS signature verified");
                Ok(())
            }
            None => self.failed(format!(
                "signatureText matches no known construction{}: check that sources.dms.signature_key equals the \
                 签名密钥 set in DMS and that sources.dms.webhook_url is exactly the URL configured there; \
                 capture the body and run `hookbridge dms verify --body F --url U` (the key from DMS_SIGNATURE_KEY or stdin)",
                self.pinned
                    .as_ref()
                    .map(|p| format!(" (pinned to {p})"))
                    .unwrap_or_default()
            )),
        }
    }
}

pub struct DmsSource {
    signature: Option<SignatureCheck>,
    /// `user:password` expected in HTTP Basic auth.
    basic: Option<String>,
    max_body_bytes: usize,
    forward_test: bool,
}

impl DmsSource {
    pub fn new(
        signature: Option<SignatureCheck>,
        basic: Option<(String, String)>,
        max_body_bytes: usize,
        forward_test: bool,
    ) -> Self {
        DmsSource {
            signature,
            basic: basic.map(|(u, p)| format!("{u}:{p}")),
            max_body_bytes,
            forward_test,
        }
    }
}

#[async_trait]
impl SourcePart for DmsSource {
    type Config = DmsConfig;
    const TEMPLATE: Builtin = Builtin {
        title: "【DMS】{{ module }}{{ event }}",
        text: "{{ message | trim }}",
    };

    fn check(config: &DmsConfig) -> Result<(), ConfigError> {
        let mode = config.signature_mode.unwrap_or(SignatureMode::Off);
        if mode != SignatureMode::Off && config.signature_key.is_none() {
            return Err(ConfigError::Invalid(
                "sources.dms: signature_mode needs a signature_key".into(),
            ));
        }
        if let Some(v) = &config.signature_variant
            && !constructions("{}", "k", Some("https://h/p"))
                .iter()
                .any(|c| &c.name == v)
        {
            return Err(ConfigError::Invalid(format!(
                "sources.dms.signature_variant {v:?} is not a construction `hookbridge dms verify` knows"
            )));
        }
        Ok(())
    }

    async fn build(config: &DmsConfig, secrets: &Secrets) -> Result<Arc<dyn Source>, ConfigError> {
        let signature = match &config.signature_key {
            Some(k) => Some(SignatureCheck {
                key: secrets.resolve(k).await?,
                mode: config.signature_mode.unwrap_or(SignatureMode::Enforce),
                url: config.webhook_url.clone().filter(|u| !u.is_empty()),
                pinned: config.signature_variant.clone(),
            }),
            None => None,
        };
        let basic = match &config.basic_auth {
            Some(b) => Some((b.user.clone(), secrets.resolve(&b.password).await?)),
            None => None,
        };
        Ok(Arc::new(DmsSource::new(
            signature,
            basic,
            config.max_body_bytes,
            config.forward_test,
        )))
    }

    #[cfg(feature = "cli")]
    fn tool() -> Option<crate::tools::Tool> {
        Some(tools::tool())
    }

    /// DMS's notification settings: the URL, 签名方式 and 签名密钥.
    #[cfg(feature = "cli")]
    async fn setup(
        dms: &DmsConfig,
        at: &crate::tools::Deployment,
    ) -> Result<String, crate::tools::ToolError> {
        let url = format!("{}{PATH}", at.api);
        let mut out = format!(
            "In DMS: avatar → 通知 → 修改通知方式 (an administrator can do it for others under user\n\
             management), tick Webhook, and enter\n\n  Webhook   {url}\n"
        );
        match &dms.signature_key {
            Some(key) => {
                out.push_str(&format!(
                    "  签名方式  HMAC_SHA1\n  签名密钥  {}\n",
                    at.secret(key).await?
                ));
                if dms.webhook_url.as_deref() != Some(url.as_str()) {
                    out.push_str(&format!(
                        "\nSet webhook_url = \"{url}\" in [sources.dms] and deploy again: the \
                         signature may cover the URL exactly as entered in DMS.\n"
                    ));
                }
            }
            None => out.push_str(
                "  签名方式  NONE (set signature_key in [sources.dms] to require HMAC_SHA1)\n",
            ),
        }
        out.push_str("\nThen press 测试: `hookbridge deliveries list` shows the test event.\n");
        Ok(out)
    }
}

impl Source for DmsSource {
    fn name(&self) -> &'static str {
        "dms"
    }

    fn credentials(&self) -> String {
        let signing = match &self.signature {
            Some(_) => "签名方式 HMAC_SHA1 with the signature_key",
            None => "签名方式 NONE",
        };
        let basic = if self.basic.is_some() {
            ", and HTTP Basic auth"
        } else {
            ""
        };
        format!("{signing}{basic}")
    }

    fn paths(&self) -> &'static [&'static str] {
        &[PATH]
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn strict_content_type(&self) -> bool {
        // DMS does not say which Content-Type it sends; the body is JSON regardless.
        false
    }

    fn authenticate(&self, head: &Head) -> Result<(), Rejection> {
        let headers = head.headers;
        if headers.get("dms-event").is_none() {
            info!("request to /dms without the DMS-Event header");
        }
        let Some(expected) = &self.basic else {
            return Ok(());
        };
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
            .and_then(|b| BASE64.decode(b.trim()).ok())
            .ok_or_else(|| {
                Rejection::Unauthorized(
                    "missing HTTP Basic credentials: put user:password@ in the webhook URL configured in DMS".into(),
                )
            })?;
        if bool::from(given.ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized(
                "HTTP Basic credentials do not match sources.dms.basic_auth".into(),
            ))
        }
    }

    fn parse(
        &self,
        head: &Head,
        body: &[u8],
        now: Millis,
        verify: Verify,
    ) -> Result<Vec<Parsed>, Rejection> {
        self.read(head.path, body, now, verify).map(|p| vec![p])
    }

    fn recognize(&self, body: &Value) -> Option<&'static str> {
        body.get("messageEvent").map(|_| PATH)
    }

    fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String {
        match outcome {
            Ok(_) => json!({ "root": "", "success": true }),
            Err(r) => json!({ "root": r.to_string(), "success": false }),
        }
        .to_string()
    }
}

impl DmsSource {
    /// The one event a request carries.
    fn read(
        &self,
        _path: &str,
        body: &[u8],
        now: Millis,
        verify: Verify,
    ) -> Result<Parsed, Rejection> {
        let check = self
            .signature
            .as_ref()
            .filter(|c| c.mode != SignatureMode::Off && verify == Verify::Yes);
        let envelope = match Envelope::read(body) {
            Ok(e) => e,
            Err(reason) => {
                if let Some(check) = check {
                    check.failed(format!("the body cannot be verified: {reason}"))?;
                }
                return Err(Rejection::BadRequest(format!("DMS message: {reason}")));
            }
        };
        if let Some(check) = check {
            check.verify(&envelope)?;
        }
        // What was verified is what is parsed: the same `messageEvent` bytes.
        let event: DmsEvent = decode(envelope.event_json().as_bytes(), "DMS messageEvent")?;
        // No id in the body: the key is a hash of the canonical (key-sorted, compact) event, so
        // a retry of the same event is recognized however DMS formats it.
        let canonical = strict::canonical(envelope.event_json())
            .map_err(|e| Rejection::BadRequest(format!("DMS messageEvent: {e}")))?;
        let digest = Sha1::digest(canonical.as_bytes());
        let key = hex::encode(digest);
        let payload = payload(&event)?;
        // The console's Test button: stored and acknowledged, delivered only when asked.
        let notice = (!event.is_test() || self.forward_test)
            .then(|| event.notice(&key, now, payload.clone()));
        Ok(Parsed {
            event: Event {
                source: "dms".into(),
                key,
                kind: if event.is_test() { "test" } else { "message" }.into(),
                received_at: now,
                payload,
                raw: String::from_utf8_lossy(body).into_owned(),
            },
            notice,
        })
    }
}

/// `hookbridge dms verify`: which signature construction, if any, produced a captured
/// request's `signatureText`.
#[cfg(feature = "cli")]
mod tools {
    use std::path::PathBuf;

    use super::{Envelope, constructions, matching};
    use crate::tools::{Tool, ToolResult};

    pub fn tool() -> Tool {
        Tool::new("dms", "Alibaba Cloud DMS tools.", run)
    }

    #[derive(clap::Args)]
    struct Args {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        /// Which signature construction, if any, produced a captured request's signatureText.
        /// The 签名密钥 configured in DMS is read from DMS_SIGNATURE_KEY, or else from the
        /// first line of stdin: never from the command line, where `ps` and the shell history
        /// show it.
        Verify {
            /// The request body DMS sent (e.g. saved from the log in signature_mode = "log").
            #[arg(long)]
            body: PathBuf,
            /// The webhook URL exactly as configured in DMS.
            #[arg(long)]
            url: Option<String>,
        },
    }

    async fn run(args: Args) -> ToolResult {
        let Command::Verify { body, url } = args.command;
        verify(&body, &signature_key()?, url.as_deref())
    }

    /// The DMS 签名密钥: `DMS_SIGNATURE_KEY`, or the first line of stdin.
    fn signature_key() -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        if let Some(key) = std::env::var("DMS_SIGNATURE_KEY")
            .ok()
            .filter(|k| !k.is_empty())
        {
            return Ok(key);
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            eprint!("DMS 签名密钥 (read here, never from the command line): ");
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let key = line.trim_end_matches(['\r', '\n']).to_owned();
        if key.is_empty() {
            return Err("no key: set DMS_SIGNATURE_KEY or give the 签名密钥 on stdin".into());
        }
        Ok(key)
    }

    /// Runs every known construction over a captured DMS request and says which matched.
    fn verify(body: &PathBuf, key: &str, url: Option<&str>) -> ToolResult {
        let bytes = std::fs::read(body).map_err(|e| format!("{}: {e}", body.display()))?;
        let envelope = Envelope::read(&bytes)
            .map_err(|e| format!("{}: not a DMS webhook body: {e}", body.display()))?;
        let signature = envelope
            .signature_text()?
            .ok_or("the body has no signatureText")?;
        let event = envelope.event_json();
        let tried = constructions(event, key, url).len();
        let found = matching(event, key, url, &signature);
        if found.is_empty() {
            let hint = if url.is_none() {
                " (give --url to try the constructions that sign it)"
            } else {
                ""
            };
            return Err(format!("no construction of {tried} matched{hint}: check the key, and the URL exactly as configured in DMS").into());
        }
        println!("matched: {}", found.join(", "));
        println!(
            "pin it with  signature_variant = \"{}\"  in [sources.dms]",
            found[0]
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inputs of the vectors below, each computed with its construction's formula.
    const EVENT: &str = r#"{"category":"工单","event":"执行成功","eventTime":1625630049930,"message":"【DMS数据管理】Webhook test, code: 144619 ","module":"数据变更","receivers":[{"name":"u1","uid":"1"}],"submitterName":"u1","submitterUid":"1","targetUsers":[{"name":"u1","uid":"1"}],"taskName":"Webhook test"}"#;
    const URL: &str = "https://hook.example.com/dms";

    #[test]
    fn the_console_test_is_delivered_only_when_asked() {
        let body = format!(r#"{{"messageEvent":{EVENT}}}"#);
        let parse = |forward| {
            DmsSource::new(None, None, 1 << 20, forward)
                .read(PATH, body.as_bytes(), 7, Verify::Yes)
                .unwrap()
        };
        let quiet = parse(false);
        assert_eq!(quiet.event.kind, "test");
        assert!(quiet.notice.is_none(), "stored and acknowledged only");
        let n = parse(true).notice.unwrap();
        assert_eq!((n.recipients, n.foreign_ids), (vec!["1".to_owned()], true));
        assert_eq!(n.time, 1_625_630_049_930, "the event's own time");
        assert_eq!(n.details, ["任务：Webhook test", "提交人：u1"]);
        assert_eq!(n.fields["tag"], json!(n.tag));
    }

    #[test]
    fn every_documented_vector_is_found_under_its_variant() {
        for (variant, signature) in [
            ("A/raw", "qIimXpJWt7W2JyZH/VVPCh4yO3k="),
            ("B/raw/url", "NI+sYWHbvapJOcUEGBmg9oKj4Oo="),
            ("C/raw/url", "6xnlfLh4LTD+TCWexhNJqB7IjS8="),
            ("D/raw/url", "qzw35WOKuEsTVjFUL7Em/G8gMDg="),
            ("E/raw/url", "EVNcrDMfVWLHNPlffPZQkJu6jSg="),
            ("F/url", "5SpjibNoeuOnQda5ZYyLDKvSRjE="),
            ("A/raw-esc", "RL//Wm/QKg1moN7Ih5qvlWPnuyM="),
        ] {
            let found = matching(EVENT, "dms-secret", Some(URL), signature);
            let want = variant.replace("raw-esc", "sorted-esc");
            assert!(found.contains(&want), "{variant}: {found:?}");
            assert!(
                matching(EVENT, "wrong-secret", Some(URL), signature).is_empty(),
                "{variant}"
            );
        }
    }

    #[test]
    fn event_forms_cover_pretty_printed_and_reordered_bodies() {
        let pretty = "{\n  \"b\": \"值 \\\" x\",\n  \"a\": 1\n}";
        assert_eq!(minify(pretty), "{\"b\":\"值 \\\" x\",\"a\":1}");
        assert_eq!(
            escape_non_ascii("{\"a\":\"工😀\"}"),
            "{\"a\":\"\\u5de5\\ud83d\\ude00\"}"
        );
        let names: Vec<String> = constructions(pretty, "k", None)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "A/raw",
                "A/sorted-esc",
                "A/ordered-esc",
                "A/sorted",
                "A/ordered"
            ]
        );
    }

    #[test]
    fn url_forms_drop_query_and_userinfo() {
        let forms = url_forms("https://dms:pw@hook.example.com/dms?t=1");
        let urls: Vec<&str> = forms.iter().map(|(_, u)| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://dms:pw@hook.example.com/dms?t=1",
                "https://dms:pw@hook.example.com/dms",
                "https://hook.example.com/dms?t=1"
            ]
        );
        assert_eq!(url_forms(URL).len(), 1, "identical forms are tried once");
    }

    #[test]
    fn event_time_accepts_numbers_numeric_strings_and_beijing_dates() {
        let t = |v: &str| {
            serde_json::from_str::<DmsEvent>(&format!(r#"{{"eventTime":{v}}}"#))
                .map(|e| e.event_time)
                .map_err(|e| e.to_string())
        };
        assert_eq!(t("1625630049930"), Ok(Some(1625630049930)));
        assert_eq!(t("\"1625630049930\""), Ok(Some(1625630049930)));
        assert_eq!(t("\"1625630049\""), Ok(Some(1625630049000)));
        assert_eq!(t("\"2021-07-07 11:54:09\""), Ok(Some(1625630049000)));
        assert_eq!(t("null"), Ok(None));
        assert!(
            t("\"yesterday\"")
                .unwrap_err()
                .contains("yyyy-MM-dd HH:mm:ss")
        );
        assert!(t("true").is_err());
    }
}
