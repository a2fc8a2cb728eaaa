//! `retry-sweeper`: every minute, due retries go back to pending. Needs the table, no secrets.
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hookbridge::logging::init_lambda();
    let (_, store) = hookbridge::lambda::store_from_env().await?;
    lambda_runtime::run(service_fn(|event| {
        hookbridge::lambda::sweeper(&store, event)
    }))
    .await
}
