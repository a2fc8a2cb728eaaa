//! Any system that can post JSON (GitLab, GitHub, Jenkins, Zabbix, a script): `POST /in/<name>`,
//! one `[sources.generic.<name>]` each. The instance says how a request proves itself (a shared
//! token in a header, as GitLab's `X-Gitlab-Token`; or an HMAC-SHA256 of the raw body in a
//! header, as GitHub's `X-Hub-Signature-256: sha256=…`), where the event's id, kind, recipients
//! and link are in the body (JSON pointers), and routes' templates read the body by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Accepted, Head, Parsed, Rejection, Source, SourcePart, Verify, decode};
use crate::event::{Event, Millis};
use crate::notice::{Intent, Notice};
use crate::setup::{ConfigError, SecretRef, Secrets};
use crate::templates::Builtin;

const SOURCE: &str = "generic";
const PREFIX: &str = "/in/";

// ---- config: [sources.generic.<name>] ----

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericInstance {
    /// A header carrying a shared token, compared whole (GitLab: `X-Gitlab-Token`); with
    /// `token`.
    pub token_header: Option<String>,
    /// That token, a secret reference.
    pub token: Option<SecretRef>,
    /// A header carrying the hex HMAC-SHA256 of the raw body (GitHub: `X-Hub-Signature-256`);
    /// with `secret`.
    pub signature_header: Option<String>,
    /// What comes before the hex in that header (GitHub: `sha256=`).
    #[serde(default)]
    pub signature_prefix: String,
    /// The HMAC key, a secret reference.
    pub secret: Option<SecretRef>,
    /// JSON pointer to the event's id (`/checkout_sha`): a repeat with the same id is a
    /// duplicate. Absent: the body's hash, so only an identical body is.
    pub id: Option<String>,
    /// JSON pointer to the event's kind, which routes' `kinds` name (`/object_kind`); absent or
    /// empty there: `event`.
    pub kind: Option<String>,
    /// JSON pointer to who should read it: a text (comma-separated) or a list of texts, mapped
    /// by `[recipients.<connector>]`.
    pub recipients: Option<String>,
    /// JSON pointer to the link a notice carries (`/project/web_url`).
    pub link: Option<String>,
    /// Larger bodies are answered 413.
    #[serde(default = "super::default_max_body")]
    pub max_body_bytes: usize,
}

/// How a request proves itself.
enum Proof {
    Token {
        header: String,
        value: String,
    },
    Signature {
        header: String,
        prefix: String,
        key: Vec<u8>,
    },
}

struct Instance {
    path: &'static str,
    proof: Proof,
    config: GenericInstance,
}

pub struct GenericSource {
    instances: Vec<Instance>,
    paths: &'static [&'static str],
}

#[async_trait]
impl SourcePart for GenericSource {
    /// Instances by name: `[sources.generic.<name>]`, posted to at `/in/<name>`.
    type Config = BTreeMap<String, GenericInstance>;
    const TEMPLATE: Builtin = Builtin {
        title: "{{ title or hookbridge.instance ~ ' ' ~ hookbridge.kind }}",
        text: "{{ text or message or description or summary }}",
    };

    fn check(config: &Self::Config) -> Result<(), ConfigError> {
        for (name, i) in config {
            let invalid =
                |m: &str| Err(ConfigError::Invalid(format!("sources.generic.{name}: {m}")));
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return invalid("the name is the URL's last part: letters, digits, - or _");
            }
            match (&i.token_header, &i.token, &i.signature_header, &i.secret) {
                (Some(_), Some(_), None, None) | (None, None, Some(_), Some(_)) => {}
                _ => {
                    return invalid(
                        "give token_header and token, or signature_header and secret: one way \
                         to prove a request, never none",
                    );
                }
            }
            for (key, pointer) in [
                ("id", &i.id),
                ("kind", &i.kind),
                ("recipients", &i.recipients),
                ("link", &i.link),
            ] {
                if pointer.as_ref().is_some_and(|p| !p.starts_with('/')) {
                    return invalid(&format!(
                        "{key} is a JSON pointer and starts with / (e.g. \"/object_kind\")"
                    ));
                }
            }
        }
        Ok(())
    }

    async fn build(
        config: &Self::Config,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Source>, ConfigError> {
        Ok(Arc::new(GenericSource::new(config, secrets).await?))
    }

    /// The URL, the header and its secret for each instance.
    #[cfg(feature = "cli")]
    async fn setup(
        config: &Self::Config,
        at: &crate::tools::Deployment,
    ) -> Result<String, crate::tools::ToolError> {
        let mut out = String::from("Point each sender at its URL, proving itself as shown:\n");
        for (name, i) in config {
            out.push_str(&format!(
                "\n  {name}\n    URL     {}{PREFIX}{name}\n",
                at.api
            ));
            match (&i.token_header, &i.token, &i.signature_header, &i.secret) {
                (Some(h), Some(t), ..) => {
                    out.push_str(&format!("    header  {h}: {}\n", at.secret(t).await?))
                }
                (_, _, Some(h), Some(s)) => out.push_str(&format!(
                    "    header  {h}: {}<hex HMAC-SHA256 of the body> (the sender's secret: {})\n",
                    i.signature_prefix,
                    at.secret(s).await?
                )),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Source for GenericSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn paths(&self) -> &'static [&'static str] {
        self.paths
    }

    /// Scripts post JSON with whatever `Content-Type` their tool sets (curl: a form's); the
    /// body must be a JSON object all the same.
    fn strict_content_type(&self) -> bool {
        false
    }

    fn max_body_bytes(&self) -> usize {
        // Asked before the instance is known: the largest instance's limit bounds every one,
        // and `parse` holds each to its own.
        self.instances
            .iter()
            .map(|i| i.config.max_body_bytes)
            .max()
            .unwrap_or(0)
    }

    fn credentials(&self) -> String {
        self.instances
            .iter()
            .map(|i| match &i.proof {
                Proof::Token { header, .. } => format!("{}: {header} token", i.path),
                Proof::Signature { header, .. } => {
                    format!("{}: {header} HMAC-SHA256 of the body", i.path)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn authenticate(&self, head: &Head) -> Result<(), Rejection> {
        let i = self.instance(head.path)?;
        let header = match &i.proof {
            Proof::Token { header, .. } | Proof::Signature { header, .. } => header,
        };
        let given = head.headers.get(header.as_str()).ok_or_else(|| {
            Rejection::Unauthorized(format!(
                "missing {header}: the sender must send it (see sources.generic)"
            ))
        })?;
        if let Proof::Token { value, .. } = &i.proof
            && !bool::from(given.as_bytes().ct_eq(value.as_bytes()))
        {
            return Err(Rejection::Unauthorized(format!(
                "{header} does not match the instance's token"
            )));
        }
        Ok(())
    }

    fn parse(
        &self,
        head: &Head,
        body: &[u8],
        now: Millis,
        verify: Verify,
    ) -> Result<Vec<Parsed>, Rejection> {
        let i = self.instance(head.path)?;
        // The pipeline held the body to the largest instance's limit; this is this one's.
        if body.len() > i.config.max_body_bytes {
            return Err(Rejection::TooLarge {
                limit: i.config.max_body_bytes,
            });
        }
        if let (
            Proof::Signature {
                header,
                prefix,
                key,
            },
            Verify::Yes,
        ) = (&i.proof, verify)
        {
            let given = head
                .headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix(prefix.as_str()))
                .and_then(|hex_text| hex::decode(hex_text.trim()).ok())
                .ok_or_else(|| {
                    Rejection::Unauthorized(format!(
                        "{header} is not {prefix}<hex HMAC-SHA256 of the body>"
                    ))
                })?;
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(body);
            if mac.verify_slice(&given).is_err() {
                return Err(Rejection::Unauthorized(format!(
                    "{header} does not match the body signed with the instance's secret"
                )));
            }
        }
        let mut fields: Value = decode(body, "the body")?;
        let name = &i.path[PREFIX.len()..];
        let text = |pointer: &Option<String>| {
            pointer
                .as_deref()
                .and_then(|p| fields.pointer(p))
                .and_then(as_text)
        };
        let id = match text(&i.config.id) {
            Some(id) => id,
            None if i.config.id.is_some() => {
                return Err(Rejection::BadRequest(format!(
                    "the body has no id at {} (sources.generic.{name}.id)",
                    i.config.id.as_deref().unwrap_or_default()
                )));
            }
            None => hex::encode(Sha256::digest(body)),
        };
        let key = format!("{name}-{id}");
        let kind = text(&i.config.kind)
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "event".into());
        let link = text(&i.config.link).filter(|l| l.starts_with("http"));
        let recipients: Vec<String> = match i
            .config
            .recipients
            .as_deref()
            .and_then(|p| fields.pointer(p))
        {
            Some(Value::Array(items)) => items.iter().filter_map(as_text).collect(),
            Some(v) => as_text(v)
                .map(|t| {
                    t.split([',', '，'])
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            None => vec![],
        };
        if let Some(o) = fields.as_object_mut() {
            o.insert(
                "hookbridge".into(),
                json!({ "instance": name, "kind": kind, "id": key }),
            );
        }
        let raw = String::from_utf8_lossy(body).into_owned();
        let notice = Notice {
            recipients,
            link,
            app: Some(name.to_owned()),
            // Tagged from the id, not the instance's name every event shares.
            ..Notice::new("hookbridge", Intent::Message, &id, now, fields.clone())
        };
        Ok(vec![Parsed {
            event: Event {
                source: SOURCE.into(),
                key,
                kind,
                received_at: now,
                payload: fields,
                raw,
            },
            notice: Some(notice),
        }])
    }

    fn reply(&self, outcome: Result<&Accepted, &Rejection>) -> String {
        match outcome {
            Ok(a) => json!({ "ok": true, "event": a.event, "duplicate": a.duplicate, "deliveries": a.deliveries }),
            Err(r) => json!({ "ok": false, "error": r.to_string() }),
        }
        .to_string()
    }

    /// Any JSON could be for an instance: give the path.
    fn recognize(&self, _: &Value) -> Option<&'static str> {
        None
    }
}

impl GenericSource {
    /// Each instance with its secret resolved.
    pub async fn new(
        config: &BTreeMap<String, GenericInstance>,
        secrets: &Secrets,
    ) -> Result<GenericSource, ConfigError> {
        let mut instances = vec![];
        for (name, i) in config {
            let proof = match (&i.token_header, &i.token, &i.signature_header, &i.secret) {
                (Some(header), Some(token), ..) => Proof::Token {
                    header: header.clone(),
                    value: secrets.resolve(token).await?,
                },
                (_, _, Some(header), Some(secret)) => Proof::Signature {
                    header: header.clone(),
                    prefix: i.signature_prefix.clone(),
                    key: secrets.resolve(secret).await?.into_bytes(),
                },
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "sources.generic.{name}: no proof"
                    )));
                }
            };
            // Built once per process from the config: the paths live as long as it runs.
            let path: &'static str = Box::leak(format!("{PREFIX}{name}").into_boxed_str());
            instances.push(Instance {
                path,
                proof,
                config: i.clone(),
            });
        }
        let paths = Box::leak(
            instances
                .iter()
                .map(|i| i.path)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        Ok(GenericSource { instances, paths })
    }

    fn instance(&self, path: &str) -> Result<&Instance, Rejection> {
        self.instances
            .iter()
            .find(|i| i.path == path)
            .ok_or(Rejection::NotFound)
    }
}

/// A text or a number as text.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    const PUSH: &str = include_str!("../../../tests/fixtures/generic-gitlab-push.json");

    async fn source(toml_text: &str) -> GenericSource {
        let config: BTreeMap<String, GenericInstance> = toml::from_str(toml_text).unwrap();
        GenericSource::check(&config).unwrap();
        GenericSource::new(&config, &Secrets::default())
            .await
            .unwrap()
    }

    const GITLAB: &str = r#"
        [gitlab]
        token_header = "X-Gitlab-Token"
        token = "plain:gl-token"
        id = "/checkout_sha"
        kind = "/object_kind"
        recipients = "/user_username"
        link = "/project/web_url"
        [github]
        signature_header = "X-Hub-Signature-256"
        signature_prefix = "sha256="
        secret = "plain:gh-secret"
    "#;

    fn head<'a>(path: &'a str, headers: &'a HeaderMap) -> Head<'a> {
        Head {
            path,
            headers,
            peer: None,
        }
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    fn signed(body: &str, key: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[tokio::test]
    async fn a_gitlab_push_reads_by_its_pointers() {
        let s = source(GITLAB).await;
        let h = with("x-gitlab-token", "gl-token");
        assert!(s.authenticate(&head("/in/gitlab", &h)).is_ok());
        let p = s
            .parse(&head("/in/gitlab", &h), PUSH.as_bytes(), 7, Verify::Yes)
            .unwrap();
        let e = &p[0].event;
        assert_eq!(
            (e.key.as_str(), e.kind.as_str()),
            ("gitlab-da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "push")
        );
        let n = p[0].notice.as_ref().unwrap();
        assert_eq!(n.recipients, ["jsmith"]);
        // Tagged from the id: two events of one instance never share a tag.
        assert_eq!(n.tag, "#da1560");
        assert_eq!(
            n.link.as_deref(),
            Some("https://gitlab.example.com/mike/diaspora")
        );
        assert_eq!(n.fields["project"]["name"], "Diaspora");
        assert_eq!(n.fields["hookbridge"]["kind"], "push");
        let wrong = with("x-gitlab-token", "guess");
        let err = s.authenticate(&head("/in/gitlab", &wrong)).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        let none = HeaderMap::new();
        let err = s.authenticate(&head("/in/gitlab", &none)).unwrap_err();
        assert!(err.to_string().contains("missing X-Gitlab-Token"), "{err}");
        assert_eq!(
            s.authenticate(&head("/in/nobody", &h)).unwrap_err(),
            Rejection::NotFound
        );
        let err = s
            .parse(
                &head("/in/gitlab", &h),
                br#"{"object_kind":"push"}"#,
                7,
                Verify::Yes,
            )
            .unwrap_err();
        assert!(err.to_string().contains("no id at /checkout_sha"), "{err}");
    }

    /// The signature covers the very bytes parsed: one flipped byte, or another key, is refused.
    #[tokio::test]
    async fn a_signed_body_is_checked_on_the_bytes_parsed() {
        let s = source(GITLAB).await;
        let body = r#"{"action":"opened","title":"CI 失败","text":"main 分支构建失败"}"#;
        let good = with("x-hub-signature-256", &signed(body, "gh-secret"));
        assert!(s.authenticate(&head("/in/github", &good)).is_ok());
        let p = s
            .parse(&head("/in/github", &good), body.as_bytes(), 7, Verify::Yes)
            .unwrap();
        assert_eq!(p[0].event.kind, "event");
        assert!(
            p[0].event.key.starts_with("github-") && p[0].event.key.len() == "github-".len() + 64
        );
        let tampered = body.replace("失败\"", "成功\"");
        let err = s
            .parse(
                &head("/in/github", &good),
                tampered.as_bytes(),
                7,
                Verify::Yes,
            )
            .unwrap_err();
        assert!(err.to_string().contains("does not match the body"), "{err}");
        let other = with("x-hub-signature-256", &signed(body, "other"));
        assert!(
            s.parse(&head("/in/github", &other), body.as_bytes(), 7, Verify::Yes)
                .is_err()
        );
        let bare = with("x-hub-signature-256", "deadbeef");
        let err = s
            .parse(&head("/in/github", &bare), body.as_bytes(), 7, Verify::Yes)
            .unwrap_err();
        assert!(err.to_string().contains("is not sha256=<hex"), "{err}");
        // Previewing a body (config check --fixture) reads it unsigned.
        let none = HeaderMap::new();
        assert!(
            s.parse(&head("/in/github", &none), body.as_bytes(), 7, Verify::Skip)
                .is_ok()
        );
    }

    /// Each instance's own body limit holds, though the pipeline can only apply the largest.
    #[tokio::test]
    async fn each_instance_keeps_its_own_body_limit() {
        let small = "\n[small]\ntoken_header = \"X\"\ntoken = \"plain:t\"\nmax_body_bytes = 10\n";
        let s = source(&format!("{GITLAB}{small}")).await;
        assert_eq!(s.max_body_bytes(), 256 * 1024);
        let h = with("x", "t");
        let long = br#"{"a":"longer than ten"}"#;
        let err = s
            .parse(&head("/in/small", &h), long, 7, Verify::Yes)
            .unwrap_err();
        assert_eq!(err, Rejection::TooLarge { limit: 10 });
        assert!(
            s.parse(&head("/in/small", &h), br#"{"a":1}"#, 7, Verify::Yes)
                .is_ok()
        );
    }

    #[test]
    fn an_instance_without_one_way_to_prove_a_request_is_refused() {
        let check = |t: &str| {
            let c: BTreeMap<String, GenericInstance> = toml::from_str(t).unwrap();
            GenericSource::check(&c).unwrap_err().to_string()
        };
        assert!(check("[a]\nid = \"/x\"").contains("one way to prove"));
        assert!(check("[a]\ntoken_header = \"X\"\ntoken = \"plain:t\"\nsecret = \"plain:s\"\nsignature_header = \"Y\"").contains("one way"));
        assert!(
            check("[a]\ntoken_header = \"X\"\ntoken = \"plain:t\"\nkind = \"object_kind\"")
                .contains("starts with /")
        );
        assert!(
            check("[\"a b\"]\ntoken_header = \"X\"\ntoken = \"plain:t\"")
                .contains("letters, digits")
        );
    }
}
