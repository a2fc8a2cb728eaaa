//! The HTTPS clients: the AWS SDK's configuration, loaded once per process, and the
//! connectors' reqwest clients. Both use rustls on ring: one crypto library in every binary,
//! smaller than aws-lc and free of its jitter-entropy seeding, which costs tens of milliseconds
//! at the first random number on Lambda-class machines.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider, SharedHttpClient};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
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
/// `AWS_ENDPOINT_URL` (DynamoDB Local) is honoured as the SDK does.
pub fn env_config(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(aws_client())
        .region(
            var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .map(Region::new),
        );
    if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        let credentials =
            Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        config = config.credentials_provider(SharedCredentialsProvider::new(credentials));
    }
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    config.build()
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
