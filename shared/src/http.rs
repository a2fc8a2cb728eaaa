//! The HTTPS clients: the AWS SDK's configuration, loaded once per process, and the
//! connectors' reqwest clients. Both use rustls on ring: one crypto library in every binary,
//! smaller than aws-lc and free of its jitter-entropy seeding, which costs tens of milliseconds
//! at the first random number on Lambda-class machines.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider, SharedHttpClient};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use tokio::sync::OnceCell;

/// The AWS SDK's HTTPS client (system roots, as the SDK's default).
pub fn aws_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The AWS configuration, loaded once and shared by the DynamoDB and Secrets Manager clients:
/// the SDK's whole default chain (profiles, SSO, instance metadata…) with the `aws-profiles`
/// feature, as the CLI has; else [`env_config`], as Lambda provides it.
pub async fn aws_config() -> &'static SdkConfig {
    static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();
    CONFIG
        .get_or_init(|| async {
            #[cfg(feature = "aws-profiles")]
            let config = aws_config::defaults(BehaviorVersion::latest())
                .http_client(aws_client())
                .load()
                .await;
            #[cfg(not(feature = "aws-profiles"))]
            let config = env_config(|name| std::env::var(name).ok());
            config
        })
        .await
}

/// The AWS configuration from environment variables alone: on Lambda, region and the
/// execution role's credentials are there, and nothing else is needed. Without the default
/// chain a function links no STS client, profile parser or instance-metadata client.
/// Endpoints are read as the SDK reads them: `AWS_ENDPOINT_URL_<SERVICE>` (e.g.
/// `AWS_ENDPOINT_URL_DYNAMODB`), else `AWS_ENDPOINT_URL` (DynamoDB Local, a test's fakes).
pub fn env_config(var: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> SdkConfig {
    let var = Arc::new(move |name: &str| var(name).filter(|v| !v.is_empty()));
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(aws_client())
        .region(
            var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .map(Region::new),
        )
        .service_config(Endpoints(var.clone()));
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        let credentials =
            Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        config = config.credentials_provider(SharedCredentialsProvider::new(credentials));
    }
    config.build()
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Per-service settings from the environment, the service's own variable first.
struct Endpoints(Lookup);

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Endpoints(environment)")
    }
}

impl LoadServiceConfig for Endpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let service = key.service_id().to_uppercase().replace([' ', '-'], "_");
        (self.0)(&format!("{}_{service}", key.env())).or_else(|| (self.0)(key.env()))
    }
}

/// A reqwest client that gives up after `timeout` (and on connecting after at most 5 s).
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    // reqwest is built without a crypto provider: ring is installed once for the process (a
    // second install fails harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
}
