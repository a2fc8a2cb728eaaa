//! `dms-webhook`: API Gateway HTTP API → POST /dms (Alibaba Cloud DMS custom webhook).
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hookbridge::lambda::run_webhook("dms").await
}
