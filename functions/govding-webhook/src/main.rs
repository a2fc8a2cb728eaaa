//! `govding-webhook`: API Gateway HTTP API → POST /govding/{token} (浙政钉 gateway callbacks).
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hookbridge::lambda::run_webhook("govding").await
}
