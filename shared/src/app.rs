//! Wiring: a config and a store become the ingress pipeline and the sender loop. Lambda
//! functions, `hookbridge serve` and the tests all build through here, so they run the same
//! components with the same settings.

use std::sync::Arc;

use crate::config::{Config, ConfigError, Secrets};
use crate::connectors::Ports;
use crate::delivery::Sender;
use crate::ingress::Ingress;
use crate::registry::TEMPLATES;
use crate::routing::Router;
use crate::store::Store;
use crate::templates::Templates;

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

impl Parts {
    fn has_source(self, name: &str) -> bool {
        matches!(self, Parts::All) || matches!(self, Parts::Source(s) if s == name)
    }

    fn has_connector(self, name: &str) -> bool {
        matches!(self, Parts::All) || matches!(self, Parts::Connector(c) if c == name)
    }
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
        let sources = config
            .sources
            .build(secrets, |name| parts.has_source(name))
            .await?;
        let ports = Ports {
            tokens: store.clone(),
            history: store.clone(),
            receipts: store.clone(),
            cache: store.clone(),
            usage: store.clone(),
            rates: store.clone(),
        };
        let connectors = config
            .connectors
            .build(secrets, &ports, |name| parts.has_connector(name))
            .await?;
        let dry_run = connectors
            .iter()
            .filter(|c| c.dry_run())
            .map(|c| c.name())
            .collect();
        let templates = Templates::new(TEMPLATES, &config.templates)?;
        let router = Router::new(
            &config.routes,
            config.recipients.clone(),
            &config.connectors.renderers(),
            templates,
        )?;
        Ok(App {
            ingress: Ingress::new(sources, router, store.clone()),
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
