//! Prometheus Alertmanager (and Grafana's webhook contact point, which sends the same shape):
//! `POST /alertmanager`, a group notification (webhook payload version 4). Each alert in it is
//! its own event, keyed by its fingerprint, when it started and its status, so:
//!
//! - a retry of a notification is a duplicate: the same alerts, the same keys;
//! - a still-firing alert is one card that changes, not a stream of the same card; a repeat
//!   (Alertmanager's `repeat_interval`) in a later `repeat_interval_secs` window since the alert
//!   started is a `repeat` reminder, once per window, and a repeat in the same window a duplicate;
//! - an alert joining a group that already fired is shown alone, without the others again;
//! - the whole notification is also one `group` event, for routes that want one message per
//!   group (as Alertmanager's own receivers show it), keyed by the group and its alerts' states;
//! - a firing alert is a to-do (its card's bar reads 告警中); when it resolves, the same
//!   fingerprint and start finish it (the bar reads 已恢复) and a `resolved` message says so to
//!   routes that take that kind (robots, ZenTao: they have no bar to flip).
//!
//! Auth as `http_config` sends it: `Authorization: Bearer` or Basic, compared in constant
//! time; optionally only from listed addresses.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Accepted, AllowIps, Head, Parsed, Rejection, Source, SourcePart, Verify, decode};
use crate::event::{Event, Millis, event_pk};
use crate::notice::{Intent, Notice, TodoStatus, local_time};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::templates::Builtin;
use tracing::warn;

const SOURCE: &str = "alertmanager";
pub const PATH: &str = "/alertmanager";
/// The kind of a firing alert; its resolution finishes routes of this kind too.
const FIRING: &str = "alert";
/// The kind of the message that says an alert resolved.
const RESOLVED: &str = "resolved";
/// The kind of the event that turns a firing alert's card to 已恢复.
const CLEARED: &str = "cleared";
/// The kind of the reminder that an alert is still firing, one per window.
const REPEAT: &str = "repeat";
/// The kind of the whole notification as one message.
const GROUP: &str = "group";

// ---- config: [sources.alertmanager] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Accepted `Authorization: Bearer` credentials (alertmanager.yml
    /// `http_config.authorization.credentials`), secret references; several allow rotation.
    #[serde(default)]
    pub bearer_tokens: Vec<SecretRef>,
    /// HTTP Basic credentials (`http_config.basic_auth`), instead of or besides a token.
    pub basic_auth: Option<AlertmanagerBasicAuth>,
    /// Accept notifications only from these addresses or CIDR ranges; empty: from any.
    #[serde(default)]
    pub allow_ips: AllowIps,
    /// The label or annotation whose value (comma-separated) names an alert's recipients, as
    /// routes map them (`[recipients.<connector>]`); a route's `users` do instead.
    #[serde(default = "default_recipients_from")]
    pub recipients_from: String,
    /// Larger bodies are answered 413 (Alertmanager's `max_alerts` keeps a group smaller).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// More Alertmanagers, each at `/alertmanager/<name>` with its own credentials (another
    /// team's; the HA peers of one Alertmanager share one instance, so their copies of a
    /// notification are one). Events carry the name as `instance_name`.
    #[serde(default)]
    pub instances: BTreeMap<String, AlertmanagerInstance>,
    /// A still-firing alert is shown again (kind `repeat`) at most once per this many seconds
    /// since it started, when Alertmanager repeats it; 0 never. Alertmanager's own default
    /// `repeat_interval` is 4 h; at least 600 s, so a retry cannot straddle two windows.
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval_secs: u64,
}

/// A named Alertmanager's credentials, as `[sources.alertmanager]` has them for the default one.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerInstance {
    /// Accepted `Authorization: Bearer` credentials, secret references.
    #[serde(default)]
    pub bearer_tokens: Vec<SecretRef>,
    /// HTTP Basic credentials, instead of or besides a token.
    pub basic_auth: Option<AlertmanagerBasicAuth>,
    /// Accept notifications only from these addresses or CIDR ranges; empty: from any.
    #[serde(default)]
    pub allow_ips: AllowIps,
}

/// One Alertmanager's credentials as configured: `name` empty for the default one.
struct Creds<'a> {
    name: &'a str,
    tokens: &'a [SecretRef],
    basic: Option<&'a AlertmanagerBasicAuth>,
    allow: &'a AllowIps,
}

impl AlertmanagerConfig {
    /// The default Alertmanager's credentials, then each named one's.
    fn creds(&self) -> Vec<Creds<'_>> {
        let default = Creds {
            name: "",
            tokens: &self.bearer_tokens,
            basic: self.basic_auth.as_ref(),
            allow: &self.allow_ips,
        };
        std::iter::once(default)
            .chain(self.instances.iter().map(|(name, i)| Creds {
                name,
                tokens: &i.bearer_tokens,
                basic: i.basic_auth.as_ref(),
                allow: &i.allow_ips,
            }))
            .collect()
    }
}

/// The URL path of the Alertmanager named `name` (the default one's when empty).
fn path_of(name: &str) -> String {
    if name.is_empty() {
        PATH.to_owned()
    } else {
        format!("{PATH}/{name}")
    }
}

/// Where an Alertmanager's credentials are configured, for messages.
fn section_of(name: &str) -> String {
    if name.is_empty() {
        "sources.alertmanager".to_owned()
    } else {
        format!("sources.alertmanager.instances.{name}")
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerBasicAuth {
    /// `basic_auth.username`.
    pub user: String,
    /// `basic_auth.password`, a secret reference.
    pub password: SecretRef,
}

fn default_recipients_from() -> String {
    "notify".into()
}

fn default_max_body() -> usize {
    1 << 20
}

fn default_repeat_interval() -> u64 {
    4 * 3600
}

/// The shortest repeat window: Alertmanager retries a notification for up to its
/// `group_interval` (5 min by default), and a retry must not land in a new window.
const MIN_REPEAT_SECS: u64 = 600;

// ---- the payload ----

/// A group notification; unknown fields (Grafana's `orgId`, `values`…) are left alone.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    receiver: String,
    #[serde(default)]
    group_key: String,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    truncated_alerts: u64,
    /// Grafana's own summary of the group, when it sends one.
    #[serde(default)]
    title: String,
    #[serde(default)]
    message: String,
    /// Grafana's state of the group (`alerting`, `ok`) and its organisation.
    #[serde(default)]
    state: String,
    #[serde(default, rename = "orgId")]
    org_id: Value,
    /// Each as it came (an event keeps its alert's own text), read apiece.
    alerts: Vec<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: Status,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
    /// Grafana's links, when it sends them.
    #[serde(default, rename = "silenceURL")]
    silence_url: String,
    #[serde(default, rename = "dashboardURL")]
    dashboard_url: String,
    #[serde(default, rename = "panelURL")]
    panel_url: String,
    /// Grafana's query values that fired the alert, by ref id.
    #[serde(default)]
    values: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Firing,
    Resolved,
}

/// One Alertmanager's resolved credentials and where it posts.
struct Auth {
    name: String,
    path: &'static str,
    tokens: Vec<String>,
    /// `user:password`, as Basic auth encodes it.
    basic: Option<String>,
    allow: AllowIps,
}

pub struct AlertmanagerSource {
    /// The default Alertmanager's first, then each named one's.
    auths: Vec<Auth>,
    paths: &'static [&'static str],
    recipients_from: String,
    max_body_bytes: usize,
    /// The repeat window in milliseconds; 0: never repeat.
    repeat_ms: Millis,
}

#[async_trait]
impl SourcePart for AlertmanagerSource {
    type Config = AlertmanagerConfig;
    const TEMPLATE: Builtin = Builtin {
        title: "{% if status == \"resolved\" %}【已恢复】{% elif repeat %}【仍在告警】\
{% else %}【告警】{% endif %}{{ alertname }}{% if alerts %}（{{ firing }} 条告警中\
{% if resolved %}，{{ resolved }} 条已恢复{% endif %}）{% elif severity %}（{{ severity }}）{% endif %}",
        text: "{% if alerts %}{% for a in alerts %}{% if not loop.first %}\n{% endif %}\
{% if a.status == \"resolved\" %}[已恢复] {% endif %}{{ a.summary or a.alertname }}\
{% if a.instance %}（{{ a.instance }}）{% endif %}，开始 {{ a.starts }}{% endfor %}\
{% if truncatedAlerts %}\n另有 {{ truncatedAlerts }} 条未列出{% endif %}\
{% else %}{{ summary }}{% if description %}\n{{ description }}{% endif %}\
{% if instance %}\n实例 {{ instance }}{% endif %}\n开始 {{ starts }}\
{% if status == \"resolved\" %}，恢复 {{ ends }}{% elif repeat %}，已持续 {{ firing_hours }} 小时\
{% endif %}{% endif %}",
    };
    const TEMPLATE_EN: Option<Builtin> = Some(Builtin {
        title: "{% if status == \"resolved\" %}[RESOLVED] {% elif repeat %}[STILL FIRING] \
{% else %}[FIRING] {% endif %}{{ alertname }}{% if alerts %} ({{ firing }} firing\
{% if resolved %}, {{ resolved }} resolved{% endif %}){% elif severity %} ({{ severity }}){% endif %}",
        text: "{% if alerts %}{% for a in alerts %}{% if not loop.first %}\n{% endif %}\
{% if a.status == \"resolved\" %}[resolved] {% endif %}{{ a.summary or a.alertname }}\
{% if a.instance %} ({{ a.instance }}){% endif %}, since {{ a.starts }}{% endfor %}\
{% if truncatedAlerts %}\n{{ truncatedAlerts }} more not listed{% endif %}\
{% else %}{{ summary }}{% if description %}\n{{ description }}{% endif %}\
{% if instance %}\nInstance {{ instance }}{% endif %}\nStarted {{ starts }}\
{% if status == \"resolved\" %}, resolved {{ ends }}{% elif repeat %}, firing for {{ firing_hours }} h\
{% endif %}{% endif %}",
    });

    fn check(config: &AlertmanagerConfig) -> Result<(), ConfigError> {
        for c in config.creds() {
            let named = c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !named {
                return Err(ConfigError::Invalid(format!(
                    "sources.alertmanager.instances.{:?}: a name is letters, digits, - and _ (it \
                     is a URL path)",
                    c.name
                )));
            }
            if c.tokens.is_empty() && c.basic.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "{} needs bearer_tokens or basic_auth: anyone who finds the URL could raise \
                     alerts otherwise",
                    section_of(c.name)
                )));
            }
        }
        if (1..MIN_REPEAT_SECS).contains(&config.repeat_interval_secs) {
            return Err(ConfigError::Invalid(format!(
                "sources.alertmanager.repeat_interval_secs = {} is shorter than {MIN_REPEAT_SECS}: \
                 a retry of one notification could be shown as a reminder (0 turns reminders off)",
                config.repeat_interval_secs
            )));
        }
        Ok(())
    }

    async fn build(
        config: &AlertmanagerConfig,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Source>, ConfigError> {
        let mut auths = vec![];
        for c in config.creds() {
            let mut tokens = vec![];
            for t in c.tokens {
                tokens.push(secrets.resolve(t).await?);
            }
            let basic = match c.basic {
                Some(b) => Some(format!(
                    "{}:{}",
                    b.user,
                    secrets.resolve(&b.password).await?
                )),
                None => None,
            };
            // Built once per process, like the generic source's instance paths.
            let path: &'static str = Box::leak(path_of(c.name).into_boxed_str());
            auths.push(Auth {
                name: c.name.to_owned(),
                path,
                tokens,
                basic,
                allow: c.allow.clone(),
            });
        }
        let paths: Vec<&'static str> = auths.iter().map(|a| a.path).collect();
        Ok(Arc::new(AlertmanagerSource {
            auths,
            paths: Box::leak(paths.into_boxed_slice()),
            recipients_from: config.recipients_from.clone(),
            max_body_bytes: config.max_body_bytes,
            repeat_ms: Millis::try_from(config.repeat_interval_secs.saturating_mul(1000))
                .unwrap_or(Millis::MAX),
        }))
    }

    /// The receiver to add to `alertmanager.yml`.
    #[cfg(feature = "cli")]
    async fn setup(
        config: &AlertmanagerConfig,
        at: &crate::tools::Deployment,
    ) -> Result<String, crate::tools::ToolError> {
        let mut receivers = String::new();
        for c in config.creds() {
            let auth = match (c.tokens.first(), c.basic) {
                (Some(token), _) => format!(
                    "          authorization:\n            credentials: {}\n",
                    at.secret(token).await?
                ),
                (None, Some(b)) => format!(
                    "          basic_auth:\n            username: {}\n            password: {}\n",
                    b.user,
                    at.secret(&b.password).await?
                ),
                (None, None) => String::new(),
            };
            let whose = if c.name.is_empty() {
                String::new()
            } else {
                format!("# in Alertmanager {}:\n", c.name)
            };
            receivers += &format!(
                "{whose}receivers:\n  - name: hookbridge\n    webhook_configs:\n      - url: {}{}\n        \
                 send_resolved: true\n        max_alerts: 50\n        http_config:\n{auth}\n",
                at.api,
                path_of(c.name)
            );
        }
        Ok(format!(
            "Add this receiver to alertmanager.yml (each Alertmanager its own), route the alerts \
             to it, and reload Alertmanager:\n\n{receivers}\
             Each alert is one card that turns 已恢复 when it resolves (a repeat is a `repeat` \
             reminder at most once every {} s; routes naming `group` get each notification as \
             one message); label or annotate alerts with `{}` (comma-separated) to say who gets \
             them.\n",
            config.repeat_interval_secs, config.recipients_from
        ))
    }
}

impl Source for AlertmanagerSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn paths(&self) -> &'static [&'static str] {
        self.paths
    }

    fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    fn credentials(&self) -> String {
        let each = |a: &Auth| {
            let mut ways = vec![];
            if !a.tokens.is_empty() {
                ways.push(format!(
                    "Authorization: Bearer ({} accepted)",
                    a.tokens.len()
                ));
            }
            if a.basic.is_some() {
                ways.push("HTTP Basic".into());
            }
            if !a.allow.is_empty() {
                ways.push(format!("from {} address(es) only", a.allow.len()));
            }
            format!("{}: {}", a.path, ways.join(", "))
        };
        self.auths.iter().map(each).collect::<Vec<_>>().join("; ")
    }

    fn authenticate(&self, head: &Head) -> Result<(), Rejection> {
        let a = self.auth_at(head.path);
        let section = section_of(&a.name);
        // A caller outside allow_ips is answered like a wrong credential: the log, not the
        // caller, learns which it was.
        let refused = || {
            Rejection::Unauthorized(format!(
                "the Authorization header does not match {section} bearer_tokens or basic_auth, \
                 or the caller is not in its allow_ips (hookbridge's log says which)"
            ))
        };
        if !a.allow.permits(head.peer) {
            warn!(peer = ?head.peer, allowed = %a.allow, "a notification from outside {section}.allow_ips");
            return Err(refused());
        }
        let given = head
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Rejection::Unauthorized(
                    "missing Authorization: set http_config.authorization.credentials (or \
                     basic_auth) on the webhook receiver in alertmanager.yml"
                        .into(),
                )
            })?;
        let (scheme, value) = given.split_once(' ').unwrap_or((given, ""));
        let matches = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => a
                .tokens
                .iter()
                .any(|t| bool::from(t.as_bytes().ct_eq(value.trim().as_bytes()))),
            "basic" => match (&a.basic, BASE64.decode(value.trim())) {
                (Some(expected), Ok(given)) => bool::from(given.ct_eq(expected.as_bytes())),
                _ => false,
            },
            _ => false,
        };
        if matches {
            Ok(())
        } else {
            warn!("a notification whose Authorization does not match {section}");
            Err(refused())
        }
    }

    fn parse(
        &self,
        head: &Head,
        body: &[u8],
        now: Millis,
        _: Verify,
    ) -> Result<Vec<Parsed>, Rejection> {
        let group: Notification = decode(body, "Alertmanager notification")?;
        if group.alerts.is_empty() {
            return Err(Rejection::BadRequest(
                "Alertmanager notification: `alerts` is empty".into(),
            ));
        }
        let mut events = vec![];
        let mut summary = GroupSummary::default();
        for (i, raw) in group.alerts.iter().enumerate() {
            let alert: Alert = serde_json::from_str(raw.get()).map_err(|e| {
                let shown: String = e.to_string().chars().take(300).collect();
                Rejection::BadRequest(format!("Alertmanager notification: alerts[{i}]: {shown}"))
            })?;
            let alert = &alert;
            let starts = millis(&alert.starts_at).ok_or_else(|| {
                Rejection::BadRequest(format!(
                    "Alertmanager notification: alerts[{i}].startsAt is not an RFC 3339 time"
                ))
            })?;
            let fingerprint = match alert.fingerprint.trim() {
                "" => fingerprint(&alert.labels),
                f => f.to_owned(),
            };
            // A named Alertmanager's alerts are its own: the same labels elsewhere are another alert.
            let episode = match self.auth_at(head.path).name.as_str() {
                "" => format!("{fingerprint}-{starts}"),
                name => format!("{name}:{fingerprint}-{starts}"),
            };
            let fields = self.fields(
                &self.auth_at(head.path).name,
                &group,
                alert,
                &fingerprint,
                starts,
            );
            let recipients = self.recipients(alert);
            let round = self.round(now, starts);
            summary.add(alert, &episode, round, &fields, &recipients);
            let link = [&alert.generator_url, &alert.panel_url, &group.external_url]
                .into_iter()
                .find(|u| u.starts_with("http"))
                .cloned();
            let notice = |intent, id: &str, at| Notice {
                recipients: recipients.clone(),
                link: link.clone(),
                app: Some(group.receiver.clone()).filter(|r| !r.is_empty()),
                ..Notice::new("Alertmanager", intent, id, at, fields.clone())
            };
            let status = TodoStatus {
                open: "告警中".into(),
                done: "已恢复".into(),
                open_en: "Firing".into(),
                done_en: "Resolved".into(),
            };
            match alert.status {
                Status::Firing => {
                    let key = format!("{episode}-firing");
                    let intent = Intent::Todo {
                        id: episode.clone(),
                        status,
                    };
                    events.push(self.parsed(
                        &key,
                        FIRING,
                        now,
                        raw,
                        &fields,
                        notice(intent, &key, starts),
                    ));
                    if round > 0 {
                        let key = format!("{episode}-repeat-{round}");
                        let mut fields = fields.clone();
                        fields["repeat"] = json!(round);
                        fields["firing_hours"] = json!((now - starts) / 3_600_000);
                        let reminder = Notice {
                            fields: fields.clone(),
                            ..notice(Intent::Message, &key, now)
                        };
                        events.push(self.parsed(&key, REPEAT, now, raw, &fields, reminder));
                    }
                }
                Status::Resolved => {
                    let ends = millis(&alert.ends_at).unwrap_or(now);
                    let key = format!("{episode}-resolved");
                    events.push(self.parsed(
                        &key,
                        RESOLVED,
                        now,
                        raw,
                        &fields,
                        notice(Intent::Message, &key, ends),
                    ));
                    let finish = Intent::Finish {
                        todo_id: episode.clone(),
                        todo_event: event_pk(SOURCE, &format!("{episode}-firing")),
                        todo_kind: FIRING,
                        status,
                    };
                    let key = format!("{episode}-cleared");
                    // Everyone's card turns 已恢复: a finish names no one.
                    let cleared = Notice {
                        recipients: vec![],
                        ..notice(finish, &key, ends)
                    };
                    events.push(self.parsed(&key, CLEARED, now, raw, &fields, cleared));
                }
            }
        }
        events.push(self.group(&self.auth_at(head.path).name, &group, summary, now, body));
        Ok(events)
    }

    fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String {
        match outcome {
            Ok(a) => json!({
                "status": "success",
                "events": a.events,
                "duplicate": a.duplicate,
                "deliveries": a.deliveries,
            }),
            Err(r) => json!({ "status": "error", "error": r.to_string() }),
        }
        .to_string()
    }

    fn recognize(&self, body: &Value) -> Option<&'static str> {
        (body.get("groupKey").is_some() && body.get("alerts").is_some()).then_some(PATH)
    }
}

impl AlertmanagerSource {
    /// What templates and routes' `when` see: the alert's labels and annotations by name (a
    /// label wins over an annotation of the same name), the common ones under their names,
    /// and the group's.
    fn fields(
        &self,
        instance: &str,
        group: &Notification,
        alert: &Alert,
        fingerprint: &str,
        starts: Millis,
    ) -> Value {
        let mut fields = serde_json::Map::new();
        for (k, v) in alert.annotations.iter().chain(&alert.labels) {
            fields.insert(k.clone(), Value::from(v.as_str()));
        }
        let ends = millis(&alert.ends_at).filter(|_| alert.status == Status::Resolved);
        for (k, v) in [
            (
                "status",
                json!(if alert.status == Status::Firing {
                    "firing"
                } else {
                    "resolved"
                }),
            ),
            ("labels", json!(alert.labels)),
            ("annotations", json!(alert.annotations)),
            ("fingerprint", json!(fingerprint)),
            ("starts", json!(local_time(starts))),
            ("ends", json!(ends.map(local_time).unwrap_or_default())),
            ("generatorURL", json!(alert.generator_url)),
            ("silenceURL", json!(alert.silence_url)),
            ("dashboardURL", json!(alert.dashboard_url)),
            ("panelURL", json!(alert.panel_url)),
            ("values", alert.values.clone()),
            ("receiver", json!(group.receiver)),
            ("groupKey", json!(group.group_key)),
            ("externalURL", json!(group.external_url)),
            ("instance_name", json!(instance)),
        ] {
            fields.insert(k.into(), v);
        }
        Value::Object(fields)
    }

    /// The credentials of the Alertmanager that posts to `path` (the default one's for any
    /// other path: the ingress only hands over paths this source serves).
    fn auth_at(&self, path: &str) -> &Auth {
        self.auths
            .iter()
            .find(|a| a.path == path)
            .unwrap_or(&self.auths[0])
    }

    /// How many repeat windows have passed since an alert started (0 when reminders are off).
    fn round(&self, now: Millis, starts: Millis) -> Millis {
        if self.repeat_ms == 0 {
            0
        } else {
            (now - starts).max(0) / self.repeat_ms
        }
    }

    /// The whole notification as one `group` event: keyed by the group and the state of each
    /// of its alerts (a retry is the same key; a change in the group, or a repeat in a later
    /// window while it fires, is a new one).
    fn group(
        &self,
        instance: &str,
        group: &Notification,
        summary: GroupSummary,
        now: Millis,
        body: &[u8],
    ) -> Parsed {
        let GroupSummary {
            mut states,
            round,
            firing,
            resolved,
            alerts,
            mut recipients,
        } = summary;
        states.sort();
        let mut hash = Sha256::new();
        if !instance.is_empty() {
            hash.update(instance.as_bytes());
            hash.update([0xff]);
        }
        hash.update(group.group_key.as_bytes());
        for state in &states {
            hash.update([0xff]);
            hash.update(state.as_bytes());
        }
        let digest = hash.finalize();
        let key = format!("group-{}-{round}", hex::encode(&digest[..8]));
        let mut fields = serde_json::Map::new();
        for (k, v) in group.common_annotations.iter().chain(&group.common_labels) {
            fields.insert(k.clone(), Value::from(v.as_str()));
        }
        for (k, v) in [
            (
                "status",
                json!(if firing > 0 { "firing" } else { "resolved" }),
            ),
            ("firing", json!(firing)),
            ("resolved", json!(resolved)),
            ("alerts", Value::Array(alerts)),
            ("truncatedAlerts", json!(group.truncated_alerts)),
            ("groupLabels", json!(group.group_labels)),
            ("commonLabels", json!(group.common_labels)),
            ("commonAnnotations", json!(group.common_annotations)),
            ("receiver", json!(group.receiver)),
            ("groupKey", json!(group.group_key)),
            ("externalURL", json!(group.external_url)),
            ("title", json!(group.title)),
            ("message", json!(group.message)),
            ("instance_name", json!(instance)),
            ("state", json!(group.state)),
            ("orgId", group.org_id.clone()),
        ] {
            fields.insert(k.into(), v);
        }
        if round > 0 {
            fields.insert("repeat".into(), json!(round));
        }
        let fields = Value::Object(fields);
        recipients.sort();
        recipients.dedup();
        let notice = Notice {
            recipients,
            link: Some(group.external_url.clone()).filter(|u| u.starts_with("http")),
            app: Some(group.receiver.clone()).filter(|r| !r.is_empty()),
            // A route shows each alert or the group: the group only when it names `group`.
            quiet: true,
            ..Notice::new("Alertmanager", Intent::Message, &key, now, fields.clone())
        };
        Parsed {
            event: Event {
                source: SOURCE.into(),
                key,
                kind: GROUP.into(),
                received_at: now,
                raw: String::from_utf8_lossy(body).into_owned(),
                payload: fields,
            },
            notice: Some(notice),
        }
    }

    /// Who the alert is for: its `recipients_from` label, else that annotation.
    fn recipients(&self, alert: &Alert) -> Vec<String> {
        let named = alert
            .labels
            .get(&self.recipients_from)
            .or_else(|| alert.annotations.get(&self.recipients_from));
        named
            .map(|v| {
                v.split([',', '，', ' '])
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn parsed(
        &self,
        key: &str,
        kind: &str,
        now: Millis,
        raw: &RawValue,
        fields: &Value,
        notice: Notice,
    ) -> Parsed {
        Parsed {
            event: Event {
                source: SOURCE.into(),
                key: key.into(),
                kind: kind.into(),
                received_at: now,
                raw: raw.get().to_owned(),
                payload: fields.clone(),
            },
            notice: Some(notice),
        }
    }
}

/// What the `group` event gathers from the alerts as they are read.
#[derive(Default)]
struct GroupSummary {
    /// Each alert's episode and status, which key the group's event.
    states: Vec<String>,
    /// The most repeat windows any firing alert has been in.
    round: Millis,
    firing: usize,
    resolved: usize,
    /// Each alert's fields, for the template's `alerts`.
    alerts: Vec<Value>,
    recipients: Vec<String>,
}

impl GroupSummary {
    fn add(
        &mut self,
        alert: &Alert,
        episode: &str,
        round: Millis,
        fields: &Value,
        recipients: &[String],
    ) {
        let status = match alert.status {
            Status::Firing => {
                self.firing += 1;
                self.round = self.round.max(round);
                "firing"
            }
            Status::Resolved => {
                self.resolved += 1;
                "resolved"
            }
        };
        self.states.push(format!("{episode}-{status}"));
        self.alerts.push(fields.clone());
        self.recipients.extend_from_slice(recipients);
    }
}

/// An RFC 3339 time in milliseconds; Alertmanager's zero time (a firing alert's `endsAt`) is
/// none.
fn millis(t: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.timestamp_millis())
        .filter(|ms| *ms > 0)
}

/// What Alertmanager would have called the alert, for a sender that gave no fingerprint: a hash
/// of its labels.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (k, v) in labels {
        hash.update(k.as_bytes());
        hash.update([0xff]);
        hash.update(v.as_bytes());
        hash.update([0xff]);
    }
    hex::encode(&hash.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::HeaderMap;

    use super::*;

    const FIRING: &str = include_str!("../../../tests/fixtures/alertmanager-firing.json");
    const ONE_RESOLVED: &str =
        include_str!("../../../tests/fixtures/alertmanager-one-resolved.json");

    fn auth(name: &str, path: &'static str, allow: Vec<IpAddr>) -> Auth {
        Auth {
            name: name.into(),
            path,
            tokens: vec!["secret-token".into()],
            basic: Some("am:pw".into()),
            allow: allow.into(),
        }
    }

    fn source() -> AlertmanagerSource {
        AlertmanagerSource {
            auths: vec![auth("", PATH, vec![])],
            paths: &[PATH],
            recipients_from: "notify".into(),
            max_body_bytes: 1 << 20,
            repeat_ms: 4 * 3_600_000,
        }
    }

    /// The alerts' events, the group's left out (`parse_at` has it).
    fn parse(body: &str) -> Result<Vec<Parsed>, Rejection> {
        let mut events = parse_at(body, 7)?;
        let group = events.pop().unwrap();
        assert_eq!(group.event.kind, GROUP);
        Ok(events)
    }

    fn parse_at(body: &str, now: Millis) -> Result<Vec<Parsed>, Rejection> {
        let headers = HeaderMap::new();
        source().parse(&head(&headers, None), body.as_bytes(), now, Verify::Yes)
    }

    fn keys(events: &[Parsed]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|p| (p.event.key.clone(), p.event.kind.clone()))
            .collect()
    }

    /// Each alert is an event: a firing one a to-do reading 告警中, keyed by fingerprint and
    /// start; the next notification of the group repeats the one still firing under the same
    /// key (a duplicate) and resolves the other: a message, and the finish of its to-do.
    #[test]
    fn each_alert_is_an_event_that_a_resolve_finishes() {
        let firing = parse(FIRING).unwrap();
        let start = millis("2026-12-07T02:34:00Z").unwrap();
        assert_eq!(
            keys(&firing),
            [
                (format!("dd497cbf50fa3589-{start}-firing"), "alert".into()),
                (format!("acce832ab5a7815c-{start}-firing"), "alert".into()),
            ]
        );
        let n = firing[0].notice.as_ref().unwrap();
        let Intent::Todo { id, status } = &n.intent else {
            panic!("{:?}", n.intent)
        };
        assert_eq!(
            (id.as_str(), status.open.as_str()),
            (format!("dd497cbf50fa3589-{start}").as_str(), "告警中")
        );
        assert_eq!(
            n.link.as_deref(),
            Some("http://prometheus:9090/graph?g0.expr=latency")
        );
        assert_eq!(n.fields["severity"], "critical");
        assert_eq!(n.fields["summary"], "接口延迟过高");
        // No generatorURL: Alertmanager's own page.
        assert_eq!(
            firing[1].notice.as_ref().unwrap().link.as_deref(),
            Some("http://vm:19093")
        );

        let next = parse(ONE_RESOLVED).unwrap();
        assert_eq!(
            keys(&next),
            [
                (
                    format!("dd497cbf50fa3589-{start}-resolved"),
                    "resolved".into()
                ),
                (
                    format!("dd497cbf50fa3589-{start}-cleared"),
                    "cleared".into()
                ),
                (format!("acce832ab5a7815c-{start}-firing"), "alert".into()),
            ]
        );
        let cleared = next[1].notice.as_ref().unwrap();
        let Intent::Finish {
            todo_event,
            todo_kind,
            status,
            ..
        } = &cleared.intent
        else {
            panic!("{:?}", cleared.intent)
        };
        assert_eq!(todo_event, &event_pk(SOURCE, &firing[0].event.key));
        assert_eq!((*todo_kind, status.done.as_str()), ("alert", "已恢复"));
        assert!(cleared.recipients.is_empty(), "every card turns");
        assert_eq!(
            next[0].notice.as_ref().unwrap().fields["ends"],
            "2026-12-07 10:34"
        );
        // The alert's own text is what was kept.
        assert!(next[0].event.raw.starts_with('{') && next[0].event.raw.contains("\"resolved\""));
    }

    /// Grafana's contact point: its extra fields read or left alone, its links kept, its
    /// time with fractions and an offset read as the same instant.
    #[test]
    fn grafana_notifications_read_the_same_way() {
        let body = include_str!("../../../tests/fixtures/alertmanager-grafana.json");
        let events = parse(body).unwrap();
        assert_eq!(events.len(), 1);
        let n = events[0].notice.as_ref().unwrap();
        assert_eq!(
            n.link.as_deref(),
            Some("https://grafana.example.com/d/disk?viewPanel=2")
        );
        assert!(
            n.fields["silenceURL"]
                .as_str()
                .unwrap()
                .starts_with("https://grafana.example.com/alerting/silence")
        );
        assert_eq!(n.fields["starts"], "2026-12-07 10:20");
        assert_eq!(
            n.fields["values"]["B"], 91.2,
            "the query values that fired it"
        );
        let group = parse_at(body, 7).unwrap().pop().unwrap();
        let fields = &group.notice.as_ref().unwrap().fields;
        assert_eq!(
            (fields["state"].clone(), fields["orgId"].clone()),
            (json!("alerting"), json!(1))
        );
        assert_eq!(n.recipients, ["ops1"]);
        let start = millis("2026-12-07T02:20:03.157Z").unwrap();
        assert_eq!(
            events[0].event.key,
            format!("5b0e2a9c7d31f486-{start}-firing")
        );
    }

    /// A retry, or a repeat within the window, is the same keys; a repeat in a later window
    /// adds a reminder (and a new group event), once per window.
    #[test]
    fn a_repeat_in_a_later_window_is_a_reminder() {
        let start = millis("2026-12-07T02:34:00Z").unwrap();
        let hour = 3_600_000;
        let at = |now| {
            let events = parse_at(FIRING, now).unwrap();
            (
                keys(&events),
                events.last().unwrap().notice.clone().unwrap(),
            )
        };
        let (first, group) = at(start + 30_000);
        let (retry, _) = at(start + 3 * hour);
        assert_eq!(first, retry, "a retry or a repeat within the window");
        assert_eq!(first.len(), 3);
        assert!(first[2].0.ends_with("-0") && first[2].1 == GROUP);
        assert_eq!(group.fields["firing"], 2);

        let (later, group) = at(start + 5 * hour);
        assert_eq!(
            later[..3],
            [
                first[0].clone(),
                (format!("dd497cbf50fa3589-{start}-repeat-1"), REPEAT.into()),
                first[1].clone(),
            ]
        );
        assert!(later[4].0.ends_with("-1") && later[4].0 != first[2].0);
        assert_eq!(group.fields["repeat"], 1);
        let events = parse_at(FIRING, start + 5 * hour).unwrap();
        let reminder = events[1].notice.as_ref().unwrap();
        assert!(matches!(reminder.intent, Intent::Message));
        assert_eq!(reminder.fields["firing_hours"], 5);
        let shown = templates().render(SOURCE, &reminder.fields, false).unwrap();
        assert_eq!(shown.title, "【仍在告警】HighLatency（critical）");
        assert!(shown.text.ends_with("，已持续 5 小时"), "{}", shown.text);
        assert_eq!(keys(&parse_at(FIRING, start + 7 * hour).unwrap()), later);
        assert_ne!(keys(&parse_at(FIRING, start + 9 * hour).unwrap()), later);

        let off = AlertmanagerSource {
            repeat_ms: 0,
            ..source()
        };
        let headers = HeaderMap::new();
        let events = off
            .parse(
                &head(&headers, None),
                FIRING.as_bytes(),
                start + 99 * hour,
                Verify::Yes,
            )
            .unwrap();
        assert_eq!(keys(&events), first, "reminders off");
    }

    /// The group event names the group's state: the next notification, with one alert
    /// resolved, is a new group event; its template lists each alert.
    #[test]
    fn the_whole_group_is_one_event_too() {
        let firing = parse_at(FIRING, 7).unwrap();
        let resolved = parse_at(ONE_RESOLVED, 7).unwrap();
        let (a, b) = (firing.last().unwrap(), resolved.last().unwrap());
        assert_ne!(a.event.key, b.event.key);
        let n = b.notice.as_ref().unwrap();
        assert_eq!(
            (n.fields["firing"].clone(), n.fields["resolved"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(n.fields["alertname"], "HighLatency");
        assert_eq!(n.fields["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(n.link.as_deref(), Some("http://vm:19093"));
        assert!(n.quiet, "only routes naming `group` take it");
        assert_eq!(b.event.raw, ONE_RESOLVED, "the notification as it came");
        let shown = templates().render(SOURCE, &n.fields, false).unwrap();
        assert_eq!(shown.title, "【告警】HighLatency（1 条告警中，1 条已恢复）");
        assert!(
            shown
                .text
                .starts_with("[已恢复] 接口延迟过高（api-1:9100），开始 2026-12-07 10:34\n"),
            "{}",
            shown.text
        );
        let e = AlertmanagerSource::check(
            &toml::from_str("bearer_tokens = [\"plain:t\"]\nrepeat_interval_secs = 60").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("shorter than 600"), "{e}");
    }

    fn templates() -> crate::templates::Templates {
        crate::templates::Templates::new(
            &[(SOURCE, AlertmanagerSource::TEMPLATE)],
            &Default::default(),
        )
        .unwrap()
    }

    /// The English built-in says the same as the Chinese one.
    #[test]
    fn the_english_template_reads_each_form() {
        let en = crate::templates::Templates::new(
            &[(SOURCE, AlertmanagerSource::TEMPLATE_EN.unwrap())],
            &Default::default(),
        )
        .unwrap();
        let show = |p: &Parsed| {
            let r = en
                .render(SOURCE, &p.notice.as_ref().unwrap().fields, false)
                .unwrap();
            format!("{}\n{}", r.title, r.text)
        };
        let start = millis("2026-12-07T02:34:00Z").unwrap();
        let firing = parse_at(FIRING, start + 5 * 3_600_000).unwrap();
        assert_eq!(
            show(&firing[0]),
            "[FIRING] HighLatency (critical)\n接口延迟过高\np99 over 2s for 5m\n\
             Instance api-1:9100\nStarted 2026-12-07 10:34"
        );
        assert!(show(&firing[1]).starts_with("[STILL FIRING] HighLatency (critical)"));
        assert!(show(&firing[1]).ends_with(", firing for 5 h"));
        let resolved = parse_at(ONE_RESOLVED, 7).unwrap();
        assert!(show(&resolved[0]).starts_with("[RESOLVED] HighLatency"));
        assert!(show(&resolved[0]).ends_with(", resolved 2026-12-07 10:34"));
        assert_eq!(
            show(resolved.last().unwrap()).lines().next(),
            Some("[FIRING] HighLatency (1 firing, 1 resolved)")
        );
    }

    #[test]
    fn recipients_come_from_the_notify_label_or_annotation() {
        let body = FIRING.replacen(
            "\"severity\": \"critical\"",
            "\"severity\": \"critical\", \"notify\": \"lisi, wangwu\"",
            1,
        );
        let events = parse(&body).unwrap();
        assert_eq!(
            events[0].notice.as_ref().unwrap().recipients,
            ["lisi", "wangwu"]
        );
        assert!(events[1].notice.as_ref().unwrap().recipients.is_empty());
    }

    #[test]
    fn bad_notifications_say_what_is_wrong() {
        let err = |body: &str| parse(body).unwrap_err().to_string();
        assert!(err(r#"{"alerts":[]}"#).contains("`alerts` is empty"));
        assert!(err(r#"{"version":"4"}"#).contains("alerts"));
        let e = err(&FIRING.replacen("2026-12-07T02:34:00Z", "yesterday", 1));
        assert!(
            e.contains("alerts[0].startsAt is not an RFC 3339 time"),
            "{e}"
        );
        let e = err(&FIRING.replacen("\"firing\"", "\"burning\"", 2));
        assert!(e.contains("alerts[0]"), "{e}");
        assert!(err("[1]").contains("JSON object"));
    }

    #[test]
    fn a_sender_without_fingerprints_gets_one_from_the_labels() {
        let body = FIRING.replace(
            "\"fingerprint\": \"dd497cbf50fa3589\"",
            "\"fingerprint\": \"\"",
        );
        let a = parse(&body).unwrap();
        let b = parse(&body).unwrap();
        assert_eq!(a[0].event.key, b[0].event.key, "stable");
        assert_ne!(a[0].event.key, a[1].event.key);
        assert_eq!(a[0].event.key.split('-').next().unwrap().len(), 16);
    }

    fn head<'a>(headers: &'a HeaderMap, peer: Option<IpAddr>) -> Head<'a> {
        Head {
            path: PATH,
            headers,
            peer,
        }
    }

    #[test]
    fn bearer_or_basic_and_the_address() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            h
        };
        let s = source();
        assert!(
            s.authenticate(&head(&with("Bearer secret-token"), None))
                .is_ok()
        );
        assert!(
            s.authenticate(&head(&with("bearer secret-token"), None))
                .is_ok()
        );
        let basic = format!("Basic {}", BASE64.encode("am:pw"));
        assert!(s.authenticate(&head(&with(&basic), None)).is_ok());
        for wrong in [
            "Bearer secret-toke",
            "Bearer ",
            "Basic bm9wZQ==",
            "Token secret-token",
        ] {
            let e = s.authenticate(&head(&with(wrong), None)).unwrap_err();
            assert!(e.to_string().contains("does not match"), "{wrong}: {e}");
        }
        let e = s.authenticate(&head(&HeaderMap::new(), None)).unwrap_err();
        assert!(e.to_string().contains("http_config.authorization"), "{e}");
        let only = AlertmanagerSource {
            auths: vec![auth("", PATH, vec!["10.0.0.9".parse().unwrap()])],
            ..source()
        };
        let ok = with("Bearer secret-token");
        assert!(
            only.authenticate(&head(&ok, Some("10.0.0.9".parse().unwrap())))
                .is_ok()
        );
        let outside = only
            .authenticate(&head(&ok, Some("10.0.0.8".parse().unwrap())))
            .unwrap_err();
        let wrong = only
            .authenticate(&head(
                &with("Bearer guess"),
                Some("10.0.0.9".parse().unwrap()),
            ))
            .unwrap_err();
        assert_eq!(
            outside, wrong,
            "an outside caller is answered like a wrong token"
        );
        assert!(!outside.to_string().contains("10.0.0.8"), "{outside}");
    }

    /// A named Alertmanager posts to its own path with its own credentials; its alerts are
    /// its own (the same labels at the default one are another alert) and say whose they are.
    #[test]
    fn a_named_instance_has_its_path_its_credentials_and_its_alerts() {
        let mut team = auth("team-a", "/alertmanager/team-a", vec![]);
        team.tokens = vec!["team-token".into()];
        let s = AlertmanagerSource {
            auths: vec![auth("", PATH, vec![]), team],
            paths: &[PATH, "/alertmanager/team-a"],
            ..source()
        };
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer team-token".parse().unwrap(),
        );
        let at = |path| Head {
            path,
            headers: &h,
            peer: None,
        };
        assert!(s.authenticate(&at("/alertmanager/team-a")).is_ok());
        let e = s.authenticate(&at(PATH)).unwrap_err().to_string();
        assert!(e.contains("sources.alertmanager bearer_tokens"), "{e}");
        let named = s
            .parse(
                &at("/alertmanager/team-a"),
                FIRING.as_bytes(),
                7,
                Verify::Yes,
            )
            .unwrap();
        let default = s
            .parse(&at(PATH), FIRING.as_bytes(), 7, Verify::Yes)
            .unwrap();
        assert!(
            named[0].event.key.starts_with("team-a:dd497cbf50fa3589-"),
            "{}",
            named[0].event.key
        );
        assert_ne!(named[0].event.key, default[0].event.key);
        assert_ne!(named[2].event.key, default[2].event.key, "groups too");
        assert_eq!(
            named[0].notice.as_ref().unwrap().fields["instance_name"],
            "team-a"
        );
        let config: AlertmanagerConfig = toml::from_str(
            "bearer_tokens = [\"plain:t\"]\n[instances.\"team a\"]\nbearer_tokens = [\"plain:u\"]\n",
        )
        .unwrap();
        let e = AlertmanagerSource::check(&config).unwrap_err().to_string();
        assert!(e.contains("letters, digits"), "{e}");
        let config: AlertmanagerConfig =
            toml::from_str("bearer_tokens = [\"plain:t\"]\n[instances.b]\nallow_ips = []\n")
                .unwrap();
        let e = AlertmanagerSource::check(&config).unwrap_err().to_string();
        assert!(
            e.contains("sources.alertmanager.instances.b needs bearer_tokens"),
            "{e}"
        );
    }

    #[test]
    fn a_config_without_auth_is_refused() {
        let config: AlertmanagerConfig = toml::from_str("").unwrap();
        let e = AlertmanagerSource::check(&config).unwrap_err().to_string();
        assert!(e.contains("bearer_tokens or basic_auth"), "{e}");
    }
}
