//! `retry-sweeper`: every minute, due retries go back to pending and due follow-ups go to their
//! sender functions. Needs the table and those functions, no secrets.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hookbridge::lambda::run_sweeper().await
}
