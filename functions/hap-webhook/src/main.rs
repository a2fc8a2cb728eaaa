//! `hap-webhook`: API Gateway HTTP API → POST /hap/message, POST /hap/todo (HAP message integration).
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hookbridge::lambda::run_webhook("hap").await
}
