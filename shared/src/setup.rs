//! What building a part from its config section needs: what a section is, secret references,
//! their resolver, and the error that says which setting is wrong.
//!
//! Secrets are never written in the config: a [`SecretRef`] names where to fetch them
//! (`env:NAME` locally, `secretsmanager:<arn>#<json key>` on AWS). `plain:` exists only for
//! throw-away local setups and is warned about.

use serde::Deserialize;
use tokio::sync::OnceCell;
use tracing::warn;

/// What a part's config section (`[sources.<name>]`, `[connectors.<name>]`) must be: read from
/// TOML, cloned into the parts that use it, shown in errors; with the `schema` feature (the
/// CLI), able to say its JSON Schema.
#[cfg(feature = "schema")]
pub trait Section:
    serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + schemars::JsonSchema
{
}
#[cfg(feature = "schema")]
impl<T> Section for T where
    T: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + schemars::JsonSchema
{
}
#[cfg(not(feature = "schema"))]
pub trait Section: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + Sync {}
#[cfg(not(feature = "schema"))]
impl<T> Section for T where T: serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + Sync {}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid TOML for hookbridge: {0}")]
    Parse(String),
    #[error("config: {0}")]
    Invalid(String),
    #[error("secret {reference}: {reason}")]
    Secret { reference: String, reason: String },
    #[error("config: {0}")]
    Template(#[from] crate::templates::TemplateError),
}

/// Where a secret comes from: `env:NAME`, `secretsmanager:<arn>[#json-key]`, or `plain:value`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(with = "String"))]
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
            SecretRef::SecretsManager { id, key: None } => write!(f, "secretsmanager:{id}"),
            SecretRef::SecretsManager { id, key: Some(k) } => write!(f, "secretsmanager:{id}#{k}"),
            SecretRef::Plain(_) => f.write_str("plain:<redacted>"),
        }
    }
}

/// A secret written as a value instead of a reference (the value itself is never repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a secret must be a reference: \"env:NAME\", \"secretsmanager:<arn>#<key>\" \
     (or \"plain:<value>\" for local experiments)"
)]
pub struct NotAReference;

impl TryFrom<String> for SecretRef {
    type Error = NotAReference;

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
            Err(NotAReference)
        }
    }
}

/// Every variable a config's `env:NAME` references name that is not set, once each in the
/// order written, so that one run names all of them (resolving stops at the first).
pub fn unset_variables(config_text: &str) -> Vec<String> {
    fn walk(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::String(s) => {
                if let Some(name) = s.strip_prefix("env:")
                    && std::env::var_os(name).is_none()
                    && !out.iter().any(|n| n == name)
                {
                    out.push(name.to_owned());
                }
            }
            toml::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            toml::Value::Table(t) => t.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    if let Ok(v) = config_text.parse::<toml::Table>() {
        walk(&toml::Value::Table(v), &mut out);
    }
    out
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
                        aws_sdk_secretsmanager::Client::new(crate::http::aws_config().await)
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
        let text = "a = \"env:HOOKBRIDGE_SURELY_UNSET\"\n[b]\nc = [\"env:PATH\", \"env:HOOKBRIDGE_UNSET_TOO\"]\nd = \"env:HOOKBRIDGE_SURELY_UNSET\"\n";
        assert_eq!(
            unset_variables(text),
            ["HOOKBRIDGE_SURELY_UNSET", "HOOKBRIDGE_UNSET_TOO"],
            "each unset one once, a set one not"
        );
    }
}
