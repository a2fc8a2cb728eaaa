//! `feishu-sender`: DynamoDB stream (pending Feishu deliveries) → Feishu / Lark app messages.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sender("feishu").await
}
