//! `generic-webhook`: API Gateway HTTP API → POST /in/{name} (any system that posts JSON:
//! GitLab, GitHub, Jenkins, a script).
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hookbridge::lambda::run_webhook("generic").await
}
