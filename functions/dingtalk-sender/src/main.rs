//! `dingtalk-sender`: DynamoDB stream (pending DingTalk deliveries) → DingTalk.
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = hookbridge::lambda::app_from_env(hookbridge::app::Parts::Delivery).await?;
    lambda_runtime::run(service_fn(|event| hookbridge::lambda::stream(&app, event))).await
}
