//! `hap-webhook`: API Gateway HTTP API → `POST /hap/message`, `POST /hap/todo`.
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let app = hookbridge::lambda::app_from_env(hookbridge::app::Parts::Ingress).await?;
    lambda_http::run(service_fn(|req| hookbridge::lambda::http(&app, req))).await
}
