//! `zentao-sender`: DynamoDB stream (pending ZenTao deliveries) → ZenTao / Xuanxuan notifications.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("zentao").await
}
