//! `wecom-robot-sender`: DynamoDB stream (pending WeCom robot posts) → WeCom group robots.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("wecom_robot").await
}
