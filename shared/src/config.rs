//! The one TOML config: sources, connectors, routes, recipient maps, retry policy. Secrets are
//! references ([`crate::setup::SecretRef`]), never values.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::event::RetryPolicy;
use crate::registry::{Connectors, Sources};
pub use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::templates::TemplateConfig;

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub connectors: Connectors,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Message templates by name (title and text, minijinja), used by routes' `template`.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateConfig>,
    /// Per connector: how source user ids become connector recipients.
    #[serde(default)]
    pub recipients: BTreeMap<String, RecipientMap>,
    #[serde(default)]
    pub delivery: RetryPolicy,
    #[serde(default)]
    pub store: StoreConfig,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address `hookbridge serve` listens on.
    pub listen: String,
    /// How often `serve` looks for due retries.
    pub sweep_interval_secs: u64,
    /// Deliveries each connector sends at once in `serve`; every connector has its own, so a
    /// slow one never holds up another.
    pub sender_concurrency: usize,
    /// A client must send its request headers within this time, and its body within
    /// `body_timeout_secs`, or the connection is closed (slow clients hold no connection).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send its whole body (see `header_timeout_secs`).
    pub body_timeout_secs: u64,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Lets clients that are not on this machine read `GET /deliveries` with
    /// `Authorization: Bearer <token>`. Without it, only loopback clients may.
    pub operator_token: Option<SecretRef>,
    /// Names (`name:port`) the operator endpoints answer to without the operator token,
    /// besides this server's own loopback addresses (`127.0.0.1:<port>`, `localhost:<port>`):
    /// a request whose `Host` is anything else is refused, so a web page cannot reach them by
    /// pointing its own name at 127.0.0.1 (DNS rebinding).
    pub hosts: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:3000".into(),
            sweep_interval_secs: 5,
            sender_concurrency: 8,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 512,
            operator_token: None,
            hosts: vec![],
        }
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Days events and deliveries are kept (DynamoDB TTL). At least as long as a configured
    /// connector may still act on a send (DingTalk: 7, for its status bars).
    pub retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { retention_days: 30 }
    }
}

impl StoreConfig {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// A route: which events of a source go to which connector, and how they read. Keys the
/// shared ones below do not name are the connector's ([`crate::connectors::Render::route_options`]).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    /// The source whose events this route takes (`[sources.<name>]`).
    pub source: String,
    /// The connector that sends it (`[connectors.<name>]`).
    pub connector: String,
    /// Event kinds this route takes (each source's page in docs/ lists its kinds). Absent:
    /// every kind but those only routes naming them take (read receipts, Alertmanager's
    /// `group`).
    pub kinds: Option<Vec<String>>,
    /// Which of the connector's instances (ZenTao; optional when there is one).
    pub instance: Option<String>,
    /// Send to this group chat (ZenTao `gid`) instead of users.
    pub group: Option<String>,
    /// Send to these connector users instead of the event's recipients.
    pub users: Option<Vec<String>>,
    /// Only events whose fields have one of these values, e.g. `{ appName = ["采购管理"] }`
    /// or `{ event = ["待审批", "待審批"] }` (DMS texts are localized: list every spelling).
    pub when: Option<BTreeMap<String, Vec<FieldValue>>>,
    /// Alertmanager-style matchers over the event's fields, all of which must hold:
    /// `severity="critical"`, `team!="db"`, `instance=~"api-.*"`, `env!~"dev|test"` (a regex
    /// matches the whole value; an absent field is empty).
    pub matchers: Option<Vec<Matcher>>,
    /// A `[templates.<name>]`; default: the source's built-in template.
    pub template: Option<String>,
    /// `zh` (default) or `en`: the built-in template's language (a source without an English
    /// one needs `template`), a to-do's state and the labels the connector adds.
    #[serde(default)]
    pub language: crate::notice::Language,
    /// The connector's own keys (DingTalk: `to_all_user`, `departments`, `recall_on_finish`,
    /// `follow_up`), read and checked by that connector.
    #[serde(flatten)]
    #[cfg_attr(feature = "schema", schemars(with = "crate::registry::RouteOptions"))]
    pub options: toml::Table,
}

impl Route {
    /// Whether an event with these fields passes its `when` and `matchers`.
    pub fn takes(&self, fields: &serde_json::Value) -> bool {
        let when = self.when.as_ref().is_none_or(|when| {
            when.iter()
                .all(|(field, accepted)| accepted.iter().any(|v| v.matches(&fields[field])))
        });
        when && self.matchers.iter().flatten().all(|m| m.matches(fields))
    }
}

/// A value to match an event field against: text or a number, compared as text.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    Text(String),
    Number(i64),
}

impl FieldValue {
    pub fn matches(&self, field: &serde_json::Value) -> bool {
        let text = match field {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return false,
        };
        match self {
            FieldValue::Text(t) => *t == text,
            FieldValue::Number(n) => n.to_string() == text,
        }
    }
}

/// One matcher, as Alertmanager writes them: a field name, `=`, `!=`, `=~` or `!~`, and a value
/// (quoted or not).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(with = "String"))]
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Matcher {
    field: String,
    negated: bool,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    Regex(regex_lite::Regex),
}

impl TryFrom<String> for Matcher {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("matcher {text:?}: write name=\"value\" (or !=, =~, !~)");
        let at = text.find(['=', '!']).ok_or_else(bad)?;
        let field = text[..at].trim().to_owned();
        let rest = &text[at..];
        let (op, value) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (op, v.trim())))
            .ok_or_else(bad)?;
        if field.is_empty() || !field.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => value.to_owned(),
        };
        let test = if op.ends_with('~') {
            // Anchored, as Alertmanager's are: the whole value matches.
            let re = regex_lite::Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| format!("matcher {text:?}: {e}"))?;
            Test::Regex(re)
        } else {
            Test::Equal(value)
        };
        Ok(Matcher {
            field,
            negated: op.starts_with('!'),
            test,
        })
    }
}

impl Matcher {
    /// Whether `fields` (an event's) pass it.
    pub fn matches(&self, fields: &serde_json::Value) -> bool {
        let value = match &fields[&self.field] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => String::new(),
        };
        let hit = match &self.test {
            Test::Equal(v) => *v == value,
            Test::Regex(re) => re.is_match(&value),
        };
        hit != self.negated
    }
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientMap {
    /// What happens to ids the map does not name: `passthrough` (sent as they are) or `require`
    /// (dropped and reported).
    #[serde(default)]
    pub mode: MapMode,
    /// Source id → connector recipient: a table, or a string `id:recipient,id:recipient` (the
    /// form a CloudFormation parameter can carry without quotes or spaces).
    #[serde(default, deserialize_with = "table_or_pairs")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "table_or_pairs_schema"))]
    pub map: BTreeMap<String, String>,
}

/// The schema of a recipient map: a table, or `id:recipient,id:recipient`.
#[cfg(feature = "schema")]
fn table_or_pairs_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            { "type": "object", "additionalProperties": { "type": "string" } },
            { "type": "string", "description": "id:recipient,id:recipient" }
        ]
    })
}

fn table_or_pairs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Table(BTreeMap<String, String>),
        Pairs(String),
    }
    let pairs = match Form::deserialize(d)? {
        Form::Table(t) => return Ok(t),
        Form::Pairs(p) => p,
    };
    let mut map = BTreeMap::new();
    for entry in pairs.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once(':') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                map.insert(from.trim().to_owned(), to.trim().to_owned());
            }
            _ => {
                let shown: String = entry.chars().take(40).collect();
                return Err(serde::de::Error::custom(format!(
                    "{shown:?} is not source_id:recipient (write id:recipient,id:recipient, or a table)"
                )));
            }
        }
    }
    Ok(map)
}

/// A parse error with its line and column but without the offending text: that line may be a
/// secret written in place of a reference.
fn located(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().and_then(|span| {
        let before = text.get(..span.start)?;
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
        Some(format!("line {line}, column {column}: "))
    });
    format!("{}{}", at.unwrap_or_default(), e.message().trim_end())
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapMode {
    /// Unmapped ids are used as they are (HAP with DingTalk SSO sends DingTalk userids).
    #[default]
    Passthrough,
    /// Unmapped ids are dropped (and reported).
    Require,
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(located(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        for (connector, secs, why) in self.connectors.windows() {
            if self.delivery.max_wait_secs > secs {
                return invalid(format!(
                    "delivery.max_wait_secs is {}, more than {secs} ({connector}: {why})",
                    self.delivery.max_wait_secs
                ));
            }
            if u64::from(self.store.retention_days) * 86_400 < u64::from(secs) {
                return invalid(format!(
                    "store.retention_days must be at least {} ({connector}: {why})",
                    secs.div_ceil(86_400)
                ));
            }
        }
        self.sources.check()?;
        self.connectors.check()?;
        let (sources, connectors) = (self.sources.configured(), self.connectors.configured());
        for (i, r) in self.routes.iter().enumerate() {
            if !sources.contains(&r.source.as_str()) {
                return invalid(format!(
                    "routes[{i}]: source \"{}\" is not configured (configured: {})",
                    r.source,
                    sources.join(", ")
                ));
            }
            if !connectors.contains(&r.connector.as_str()) {
                return invalid(format!(
                    "routes[{i}]: connector \"{0}\" is not configured (add [connectors.{0}])",
                    r.connector
                ));
            }
        }
        if self.store.retention_days == 0 {
            return invalid("store.retention_days must be at least 1".into());
        }
        if self.delivery.max_attempts == 0 {
            return invalid("delivery.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [sources.hap]
        tokens = ["plain:t"]
        [connectors.dingtalk]
        agent_id = 1
        [[routes]]
        source = "hap"
        connector = "dingtalk"
    "#;

    /// Matchers read as Alertmanager writes them and match as it does: regexes whole, an
    /// absent field empty, every one must hold.
    #[test]
    fn matchers_read_and_match_as_alertmanagers() {
        let m = |t: &str| Matcher::try_from(t.to_owned()).unwrap();
        let fields =
            serde_json::json!({ "severity": "critical", "instance": "api-1:9100", "code": 503 });
        assert!(m("severity=\"critical\"").matches(&fields));
        assert!(m("severity = critical").matches(&fields));
        assert!(!m("severity!=\"critical\"").matches(&fields));
        assert!(m("instance=~\"api-.*\"").matches(&fields));
        assert!(
            !m("instance=~\"api\"").matches(&fields),
            "anchored: the whole value"
        );
        assert!(
            m("env!~\"prod|staging\"").matches(&fields),
            "absent is empty"
        );
        assert!(m("env=\"\"").matches(&fields));
        assert!(m("code=~\"5..\"").matches(&fields), "numbers as text");
        assert!(
            m("label=\"say \\\"hi\\\"\"").matches(&serde_json::json!({ "label": "say \"hi\"" }))
        );
        for bad in ["severity", "=x", "a b=c", "x=~\"(\""] {
            assert!(Matcher::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let err = Config::from_toml(&format!("{MINIMAL}matchers = [\"x=~\\\"(\\\"\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("matcher"), "{err}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        let hap = c.sources.hap.unwrap();
        assert_eq!(hap.header, "X-Hookbridge-Token");
        assert_eq!(hap.max_body_bytes, 256 * 1024);
        let d = c.connectors.dingtalk.unwrap();
        assert_eq!(d.base_url, "https://oapi.dingtalk.com");
        assert_eq!(c.delivery, RetryPolicy::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let err = Config::from_toml(&format!("{MINIMAL}\n[delivery]\nmax_attempt = 3\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_attempt"), "{err}");
        assert!(err.contains("line 11"), "{err}");
    }

    #[test]
    fn routes_must_name_configured_parts() {
        let err = Config::from_toml(
            &MINIMAL.replace("connector = \"dingtalk\"", "connector = \"zentao\""),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("connector \"zentao\" is not configured"),
            "{err}"
        );
    }

    #[test]
    fn recipient_maps_are_tables_or_pairs() {
        let with = |map: &str| {
            Config::from_toml(&format!("{MINIMAL}\n[recipients.dingtalk]\nmap = {map}\n"))
                .map(|c| c.recipients["dingtalk"].map.clone())
                .map_err(|e| e.to_string())
        };
        let table = with(r#"{ "1673826650168842" = "lisi", u2 = "zhangsan" }"#).unwrap();
        let pairs = with(r#""1673826650168842:lisi, u2:zhangsan""#).unwrap();
        assert_eq!(table, pairs);
        assert_eq!(table.len(), 2);
        assert!(with(r#""""#).unwrap().is_empty());
        let err = with(r#""u1:lisi,{""#).unwrap_err();
        assert!(err.contains("not source_id:recipient"), "{err}");
    }

    #[test]
    fn a_connectors_window_bounds_waiting_and_retention_only_where_it_is_configured() {
        let err = |extra: &str| {
            Config::from_toml(&format!("{MINIMAL}\n{extra}"))
                .unwrap_err()
                .to_string()
        };
        let e = err("[delivery]\nmax_wait_secs = 604801\n");
        assert!(
            e.contains("more than 604800 (dingtalk:") && e.contains("7 days"),
            "{e}"
        );
        let e = err("[store]\nretention_days = 6\n");
        assert!(e.contains("at least 7 (dingtalk:"), "{e}");
        assert_eq!(RetryPolicy::default().max_wait_secs, 86_400);
        // Without DingTalk, nothing holds a send for 7 days.
        let zentao = r#"
            [sources.hap]
            tokens = ["plain:t"]
            [connectors.zentao.main]
            base_url = "http://127.0.0.1:1"
            code = "hookbridge"
            key = "plain:k"
            [[routes]]
            source = "hap"
            connector = "zentao"
            [delivery]
            max_wait_secs = 1209600
            [store]
            retention_days = 3
        "#;
        Config::from_toml(zentao).unwrap();
    }

    #[test]
    fn half_configured_credentials_are_rejected() {
        let err =
            Config::from_toml(&MINIMAL.replace("agent_id = 1", "agent_id = 1\napp_key = \"k\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("both app_key and app_secret"), "{err}");
    }

    #[test]
    fn secrets_must_be_references_and_are_never_echoed() {
        let err = Config::from_toml(&MINIMAL.replace("plain:t", "hunter2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("env:NAME"), "{err}");
        assert!(err.contains("line 3, column 18"), "{err}");
        assert!(!err.contains("hunter2"), "the value is not repeated: {err}");
    }
}
