//! `govding-sender`: DynamoDB stream (pending 浙政钉 deliveries) → 浙政钉 work notifications.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("govding").await
}
