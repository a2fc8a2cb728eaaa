//! The one TOML config: sources, connectors, routes, recipient maps, retry policy.
//!
//! Secrets are never written in the file: a [`SecretRef`] names where to fetch them
//! (`env:NAME` locally, `secretsmanager:<arn>#<json key>` on AWS). `plain:` exists only for
//! throw-away local setups and is warned about.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::OnceCell;
use tracing::warn;

use crate::connectors::dingtalk::DingTalkConfig;
use crate::connectors::zentao::ZenTaoInstance;
use crate::event::RetryPolicy;
use crate::sources::dms::DmsConfig;
use crate::sources::hap::HapConfig;
use crate::templates::TemplateConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid TOML for hookbridge: {0}")]
    Parse(String),
    #[error("config: {0}")]
    Invalid(String),
    #[error("secret {reference}: {reason}")]
    Secret { reference: String, reason: String },
}

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
    pub body_timeout_secs: u64,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Lets clients that are not on this machine read `GET /deliveries` with
    /// `Authorization: Bearer <token>`. Without it, only loopback clients may.
    pub operator_token: Option<SecretRef>,
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Days events and deliveries are kept (DynamoDB TTL). At least 7: the DingTalk status bar
    /// can be updated for 7 days after a send.
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    pub hap: Option<HapConfig>,
    pub dms: Option<DmsConfig>,
}

/// The body limit of a source that does not set its own.
pub(crate) fn default_max_body() -> usize {
    256 * 1024
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connectors {
    pub dingtalk: Option<DingTalkConfig>,
    /// ZenTao / Xuanxuan instances by name.
    #[serde(default)]
    pub zentao: BTreeMap<String, ZenTaoInstance>,
}

/// A connector's per-request timeout when it does not set its own.
pub(crate) fn default_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub source: String,
    pub connector: String,
    /// Event kinds this route takes (HAP: `todo`, `worksheet_system`, `mention`, `reply`,
    /// `workflow_system`, `workflow_system_recorded`, `unknown`). Absent: every kind.
    pub kinds: Option<Vec<String>>,
    /// ZenTao: which instance (optional when there is one).
    pub instance: Option<String>,
    /// ZenTao: send to this group chat (`gid`) instead of users.
    pub group: Option<String>,
    /// Send to these connector users instead of the event's recipients.
    pub users: Option<Vec<String>>,
    /// Only events whose fields have one of these values, e.g. `{ appName = ["采购管理"] }`
    /// or `{ event = ["待审批", "待審批"] }` (DMS texts are localized: list every spelling).
    pub when: Option<BTreeMap<String, Vec<FieldValue>>>,
    /// A `[templates.<name>]`; default: the source's built-in template.
    pub template: Option<String>,
}

/// A value to match an event field against: text or a number, compared as text.
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientMap {
    #[serde(default)]
    pub mode: MapMode,
    /// Source id → connector recipient: a table, or a string `id:recipient,id:recipient` (the
    /// form a CloudFormation parameter can carry without quotes or spaces).
    #[serde(default, deserialize_with = "table_or_pairs")]
    pub map: BTreeMap<String, String>,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.delivery.max_wait_secs > crate::event::MAX_WAIT_LIMIT_SECS {
            return invalid(format!(
                "delivery.max_wait_secs is {}, more than {} (7 days): DingTalk's status bar cannot \
                 change after that",
                self.delivery.max_wait_secs,
                crate::event::MAX_WAIT_LIMIT_SECS
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let source_known = match r.source.as_str() {
                "hap" => self.sources.hap.is_some(),
                "dms" => self.sources.dms.is_some(),
                _ => false,
            };
            if !source_known {
                return invalid(format!(
                    "routes[{i}]: source \"{}\" is not configured (configured: {})",
                    r.source,
                    self.source_names().join(", ")
                ));
            }
            let connector_known = match r.connector.as_str() {
                "dingtalk" => self.connectors.dingtalk.is_some(),
                "zentao" => !self.connectors.zentao.is_empty(),
                _ => false,
            };
            if !connector_known {
                return invalid(format!(
                    "routes[{i}]: connector \"{}\" is not configured (add [connectors.{}])",
                    r.connector, r.connector
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.connector == "zentao" {
                if self.zentao_instance(r).is_none() {
                    return invalid(format!(
                        "routes[{i}]: instance {:?} is not one of the ZenTao instances ({}); name one with `instance`",
                        r.instance.as_deref().unwrap_or(""),
                        self.connectors
                            .zentao
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            } else if r.group.is_some() || r.instance.is_some() {
                return invalid(format!(
                    "routes[{i}]: `group` and `instance` are for ZenTao routes"
                ));
            }
        }
        let templates =
            crate::templates::Templates::new(&self.templates).map_err(ConfigError::Invalid)?;
        for (i, r) in self.routes.iter().enumerate() {
            if let Some(t) = &r.template
                && !templates.contains(t)
            {
                return invalid(format!(
                    "routes[{i}]: template {t:?} is not defined (add [templates.{t}])"
                ));
            }
        }
        for (name, z) in &self.connectors.zentao {
            if !matches!(z.entry.trim_start_matches('/'), "x.php" | "api.php") {
                return invalid(format!(
                    "connectors.zentao.{name}.entry must be x.php or api.php"
                ));
            }
            if z.code.is_empty()
                || !z
                    .code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return invalid(format!(
                    "connectors.zentao.{name}.code must be the app's 代号 (letters, digits, _)"
                ));
            }
        }
        if let Some(d) = &self.connectors.dingtalk
            && d.app_key.is_some() != d.app_secret.is_some()
        {
            return invalid(
                "connectors.dingtalk: set both app_key and app_secret, or neither for dry-run"
                    .into(),
            );
        }
        if let Some(dms) = &self.sources.dms {
            dms.validate().map_err(ConfigError::Invalid)?;
        }
        if self.store.retention_days < 7 {
            return invalid("store.retention_days must be at least 7 (DingTalk status bars can be updated for 7 days)".into());
        }
        if self.delivery.max_attempts == 0 {
            return invalid("delivery.max_attempts must be at least 1".into());
        }
        Ok(())
    }

    /// The ZenTao instance a route sends to: the one it names, or the only one there is.
    pub fn zentao_instance(&self, route: &Route) -> Option<&str> {
        self.zentao_instance_named(route.instance.as_deref())
    }

    /// The instance called `name`, or without a name the only one there is.
    pub fn zentao_instance_named(&self, name: Option<&str>) -> Option<&str> {
        let zentao = &self.connectors.zentao;
        match name {
            Some(name) => zentao.get_key_value(name).map(|(k, _)| k.as_str()),
            None if zentao.len() == 1 => zentao.keys().next().map(String::as_str),
            None => None,
        }
    }

    fn source_names(&self) -> Vec<&'static str> {
        let mut names = vec![];
        if self.sources.hap.is_some() {
            names.push("hap");
        }
        if self.sources.dms.is_some() {
            names.push("dms");
        }
        names
    }
}

/// Where a secret comes from: `env:NAME`, `secretsmanager:<arn>[#json-key]`, or `plain:value`.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub enum SecretRef {
    Env(String),
    SecretsManager { id: String, key: Option<String> },
    Plain(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::SecretsManager { id, key } => {
                write!(f, "secretsmanager:{id}#{}", key.as_deref().unwrap_or(""))
            }
            SecretRef::Plain(_) => f.write_str("plain:<redacted>"),
        }
    }
}

impl TryFrom<String> for SecretRef {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if let Some(name) = s.strip_prefix("env:") {
            Ok(SecretRef::Env(name.to_owned()))
        } else if let Some(rest) = s.strip_prefix("secretsmanager:") {
            let (id, key) = match rest.rsplit_once('#') {
                Some((id, key)) => (id.to_owned(), Some(key.to_owned())),
                None => (rest.to_owned(), None),
            };
            Ok(SecretRef::SecretsManager { id, key })
        } else if let Some(value) = s.strip_prefix("plain:") {
            Ok(SecretRef::Plain(value.to_owned()))
        } else {
            Err(
                "a secret must be a reference: \"env:NAME\", \"secretsmanager:<arn>#<key>\" \
                 (or \"plain:<value>\" for local experiments)"
                    .into(),
            )
        }
    }
}

/// Resolves [`SecretRef`]s; creates a Secrets Manager client only if one is referenced.
#[derive(Default)]
pub struct Secrets {
    client: OnceCell<aws_sdk_secretsmanager::Client>,
}

impl Secrets {
    pub async fn resolve(&self, r: &SecretRef) -> Result<String, ConfigError> {
        let fail = |reason: String| ConfigError::Secret {
            reference: format!("{r:?}"),
            reason,
        };
        let value = match r {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| fail(format!("environment variable {name} is not set")))?,
            SecretRef::Plain(v) => {
                warn!("a secret is written in plain text in the config; use env:NAME instead");
                v.clone()
            }
            SecretRef::SecretsManager { id, key } => {
                let client = self
                    .client
                    .get_or_init(|| async {
                        aws_sdk_secretsmanager::Client::new(&aws_config::load_from_env().await)
                    })
                    .await;
                let out = client
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| {
                        fail(aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())
                    })?;
                let text = out
                    .secret_string()
                    .ok_or_else(|| fail("the secret has no string value".into()))?;
                match key {
                    None => text.to_owned(),
                    Some(k) => serde_json::from_str::<serde_json::Value>(text)
                        .ok()
                        .and_then(|v| v.get(k)?.as_str().map(str::to_owned))
                        .ok_or_else(|| {
                            fail(format!(
                                "the secret is not a JSON object with a string \"{k}\""
                            ))
                        })?,
                }
            }
        };
        if value.is_empty() {
            return Err(fail("the secret is empty".into()));
        }
        Ok(value)
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

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        let hap = c.sources.hap.unwrap();
        assert_eq!(hap.header, "X-Hookbridge-Token");
        assert_eq!(hap.max_body_bytes, 256 * 1024);
        let d = c.connectors.dingtalk.unwrap();
        assert_eq!(d.base_url, "https://oapi.dingtalk.com");
        assert_eq!(
            d.todo_fanout,
            crate::connectors::dingtalk::TodoFanout::PerUser
        );
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
    fn max_wait_is_at_most_seven_days() {
        let err = Config::from_toml(&format!("{MINIMAL}\n[delivery]\nmax_wait_secs = 604801\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("7 days"), "{err}");
        assert_eq!(RetryPolicy::default().max_wait_secs, 86_400);
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
    fn secrets_must_be_references() {
        let err = Config::from_toml(&MINIMAL.replace("plain:t", "hunter2"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("env:NAME"), "{err}");
    }

    #[tokio::test]
    async fn env_secrets_resolve_and_missing_ones_say_which() {
        let s = Secrets::default();
        assert!(
            !s.resolve(&SecretRef::Env("PATH".into()))
                .await
                .unwrap()
                .is_empty()
        );
        let err = s
            .resolve(&SecretRef::Env("HOOKBRIDGE_SURELY_UNSET".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKBRIDGE_SURELY_UNSET is not set"), "{err}");
    }
}
