//! `dingtalk-robot-sender`: DynamoDB stream (pending robot posts) → DingTalk group robots.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("dingtalk_robot").await
}
