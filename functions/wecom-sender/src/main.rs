//! `wecom-sender`: DynamoDB stream (pending WeCom deliveries) → WeCom app messages.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("wecom").await
}
