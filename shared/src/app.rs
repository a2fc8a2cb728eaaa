//! Wiring: a config and a store become the ingress pipeline and the sender loop. Lambda
//! functions, `hookbridge serve` and the tests all build through here, so they run the same
//! components with the same settings.

use std::sync::Arc;

use tracing::warn;

use crate::config::{Config, ConfigError, Secrets};
use crate::connectors::dingtalk::DingTalk;
use crate::connectors::zentao::ZenTao;
use crate::delivery::{Connector, Sender};
use crate::ingress::Ingress;
use crate::routing::Router;
use crate::sources::Source;
use crate::sources::dms::{DmsSource, SignatureCheck, SignatureMode};
use crate::sources::hap::HapSource;
use crate::store::Store;

/// Which halves of the pipeline to build. Each Lambda builds only its own half, so it only
/// resolves (and only has IAM access to) the secrets that half needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// One source: a webhook function (its own secrets, no connector's, no other source's).
    Source(&'static str),
    /// One connector: a sender function (its own secrets, no source's, no other connector's).
    Connector(&'static str),
    /// Both: `hookbridge serve` and tests.
    All,
}

pub struct App {
    pub ingress: Ingress,
    pub sender: Arc<Sender>,
    pub store: Arc<dyn Store>,
    pub config: Config,
    /// Connectors with no credentials, which record requests instead of sending them.
    pub dry_run: Vec<&'static str>,
}

impl App {
    pub async fn build(
        config: Config,
        store: Arc<dyn Store>,
        secrets: &Secrets,
        parts: Parts,
    ) -> Result<App, ConfigError> {
        let invalid = ConfigError::Invalid;
        let mut sources: Vec<Arc<dyn Source>> = vec![];
        let source = |name| parts == Parts::All || parts == Parts::Source(name);
        if let (Some(hap), true) = (&config.sources.hap, source("hap")) {
            let mut tokens = vec![];
            for t in &hap.tokens {
                tokens.push(secrets.resolve(t).await?);
            }
            sources.push(Arc::new(
                HapSource::new(&hap.header, tokens, hap.max_body_bytes).map_err(invalid)?,
            ));
        }
        if let (Some(dms), true) = (&config.sources.dms, source("dms")) {
            let signature = match &dms.signature_key {
                Some(k) => Some(SignatureCheck {
                    key: secrets.resolve(k).await?,
                    mode: dms.signature_mode.unwrap_or(SignatureMode::Enforce),
                    url: dms.webhook_url.clone().filter(|u| !u.is_empty()),
                    pinned: dms.signature_variant.clone(),
                }),
                None => None,
            };
            let basic = match &dms.basic_auth {
                Some(b) => Some((b.user.clone(), secrets.resolve(&b.password).await?)),
                None => None,
            };
            let source = DmsSource::new(signature, basic, dms.max_body_bytes);
            sources.push(Arc::new(source));
        }
        let mut connectors: Vec<Arc<dyn Connector>> = vec![];
        let mut dry_run = vec![];
        let connector = |name| parts == Parts::All || parts == Parts::Connector(name);
        if let (Some(dt), true) = (&config.connectors.dingtalk, connector("dingtalk")) {
            let secret = match &dt.app_secret {
                Some(s) => Some(secrets.resolve(s).await?),
                None => None,
            };
            let connector = DingTalk::new(dt, secret, store.clone()).map_err(invalid)?;
            if connector.is_dry_run() {
                warn!(
                    "DingTalk has no app_key/app_secret: dry-run, requests are recorded, not sent"
                );
                dry_run.push(crate::connectors::dingtalk::CONNECTOR);
            }
            connectors.push(Arc::new(connector));
        }
        if connector("zentao") && !config.connectors.zentao.is_empty() {
            let mut instances = vec![];
            for (name, z) in &config.connectors.zentao {
                let key = match &z.key {
                    Some(k) => Some(secrets.resolve(k).await?),
                    None => None,
                };
                instances.push((name.clone(), z.clone(), key));
            }
            let zentao = ZenTao::new(instances).map_err(invalid)?;
            if !zentao.dry_run_instances().is_empty() {
                warn!(instances = ?zentao.dry_run_instances(), "ZenTao instances without a key: dry-run");
                dry_run.push(crate::connectors::zentao::CONNECTOR);
            }
            connectors.push(Arc::new(zentao));
        }
        Ok(App {
            ingress: Ingress::new(
                sources,
                Router::new(&config).map_err(invalid)?,
                store.clone(),
            ),
            sender: Arc::new(Sender::new(connectors, store.clone(), config.delivery)),
            store,
            config,
            dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    async fn build(
        hap_token: &str,
        dingtalk_secret: &str,
        parts: Parts,
    ) -> Result<App, ConfigError> {
        let text = format!(
            r#"
            [sources.hap]
            tokens = ["{hap_token}"]
            [connectors.dingtalk]
            agent_id = 1
            app_key = "k"
            app_secret = "{dingtalk_secret}"
            [[routes]]
            source = "hap"
            connector = "dingtalk"
            "#
        );
        let config = Config::from_toml(&text).unwrap();
        App::build(
            config,
            Arc::new(MemoryStore::new()),
            &Secrets::default(),
            parts,
        )
        .await
    }

    const UNSET: &str = "env:HOOKBRIDGE_TEST_UNSET";

    #[tokio::test]
    async fn each_part_resolves_only_its_own_secrets() {
        let ingress = build("plain:t", UNSET, Parts::Source("hap")).await.unwrap();
        assert!(ingress.dry_run.is_empty() && !ingress.ingress.paths().is_empty());
        assert!(build(UNSET, "plain:s", Parts::Source("hap")).await.is_err());
        let other = build(UNSET, "plain:s", Parts::Source("dms")).await.unwrap();
        assert!(
            other.ingress.paths().is_empty(),
            "no DMS configured, and HAP's token is not read"
        );
        let delivery = build(UNSET, "plain:s", Parts::Connector("dingtalk"))
            .await
            .unwrap();
        assert!(delivery.ingress.paths().is_empty());
        assert!(
            build("plain:t", UNSET, Parts::Connector("dingtalk"))
                .await
                .is_err()
        );
        let err = build("plain:t", UNSET, Parts::All)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("HOOKBRIDGE_TEST_UNSET is not set"), "{err}");
    }
}
