//! `alertmanager-webhook`: API Gateway HTTP API → POST /alertmanager (Prometheus Alertmanager
//! and Grafana webhook receivers).
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hookbridge::lambda::run_webhook("alertmanager").await
}
