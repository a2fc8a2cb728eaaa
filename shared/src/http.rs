//! The HTTPS clients: the AWS SDK's configuration, loaded once per process, and reqwest, which
//! carries both the connectors' calls and the SDK's. One TLS configuration, rustls on ring: one
//! crypto library in every binary, smaller than aws-lc and free of its jitter-entropy seeding,
//! which costs tens of milliseconds at the first random number on Lambda-class machines, and
//! the system's CA certificates read once a process, at its first handshake.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_dynamodb::config::RuntimeComponents;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::body::SdkBody;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider, SharedHttpClient};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use tokio::sync::OnceCell;

/// The AWS SDK's HTTP client: reqwest with the connectors' TLS, so that a process reads the
/// system's CA certificates once, at its first handshake, whichever client makes it (the SDK's
/// own client read them again for itself, at its first request even over plain HTTP: 5–8 ms
/// of a cold start on a machine whose certificate directory holds 300 files).
pub fn aws_client() -> SharedHttpClient {
    SharedHttpClient::new(AwsHttp::default())
}

/// One reqwest client per timeout pair the SDK asks for (in practice one), cached as the
/// SDK's own client caches its connectors.
#[derive(Debug, Default)]
struct AwsHttp(Mutex<HashMap<Timeouts, SharedHttpConnector>>);

/// Connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for AwsHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut made = self.0.lock().unwrap_or_else(|e| e.into_inner());
        made.entry(key)
            .or_insert_with(|| {
                // AWS's endpoints are reached directly, as the SDK's own client does: a proxy
                // in the environment is for the connectors' calls.
                let mut client = reqwest::Client::builder()
                    .tls_backend_preconfigured(TLS.clone())
                    .no_proxy();
                if let Some(t) = key.0 {
                    client = client.connect_timeout(t);
                }
                if let Some(t) = key.1 {
                    client = client.read_timeout(t);
                }
                // Building fails only on a TLS backend reqwest was built without.
                let client = client
                    .build()
                    .expect("reqwest takes a preconfigured rustls");
                SharedHttpConnector::new(AwsConnector(client))
            })
            .clone()
    }
}

#[derive(Debug)]
struct AwsConnector(reqwest::Client);

impl HttpConnector for AwsConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            // Every call this project makes has its body in memory (JSON).
            let body = body
                .bytes()
                .map(bytes::Bytes::copy_from_slice)
                .ok_or_else(|| ConnectorError::user("a streaming request body".into()))?;
            let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(|e| ConnectorError::user(e.into()))?;
            let response = client.execute(request).await.map_err(connector_error)?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await.map_err(connector_error)?;
            let answer = answer
                .body(SdkBody::from(body))
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            HttpResponse::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// A failed call as the SDK's retry classifier reads it: timeouts and I/O are retried.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
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
    reqwest::Client::builder()
        .tls_backend_preconfigured(TLS.clone())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
}

/// Every HTTPS call's TLS (the connectors' and AWS's): rustls on ring, verified against the
/// system's CA certificates.
static TLS: LazyLock<rustls::ClientConfig> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SystemRoots {
            provider,
            verifier: OnceLock::new(),
        }))
        .with_no_client_auth()
});

/// A WebPKI verifier of the system's CA certificates (what reqwest's platform verifier is on
/// Linux), made at the process's first handshake instead of with each client: a cold start
/// reads and parses the certificates once, and only when a call goes out.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, rustls::Error>>,
}

impl SystemRoots {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(rustls::Error::General(format!(
                        "no CA certificates in the system's store: {:?}",
                        found.errors
                    )));
                }
                WebPkiServerVerifier::builder_with_provider(roots.into(), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system's certificates are read at the first verification, not with the verifier,
    /// and a certificate they do not vouch for is refused.
    #[test]
    fn the_system_roots_load_at_the_first_handshake_and_refuse_strangers() {
        let roots = SystemRoots {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            verifier: OnceLock::new(),
        };
        assert!(!roots.supported_verify_schemes().is_empty());
        assert!(roots.verifier.get().is_none(), "nothing read yet");
        let stranger = CertificateDer::from(b"not a certificate".to_vec());
        let name = ServerName::try_from("oapi.dingtalk.com").unwrap();
        let refused = roots.verify_server_cert(&stranger, &[], &name, &[], UnixTime::now());
        assert!(refused.is_err(), "{refused:?}");
        assert!(
            matches!(roots.verifier.get(), Some(Ok(_))),
            "the system's certificates were read once: {:?}",
            roots.verifier.get()
        );
    }
}
