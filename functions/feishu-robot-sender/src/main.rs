//! `feishu-robot-sender`: DynamoDB stream (pending Feishu bot posts) → Feishu / Lark custom bots.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("feishu_robot").await
}
