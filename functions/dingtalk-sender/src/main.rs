//! `dingtalk-sender`: DynamoDB stream (pending DingTalk deliveries) → DingTalk work notifications.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("dingtalk").await
}
