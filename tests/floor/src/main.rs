//! `hookbridge-floor`: hello world on `lambda_http`, what any Rust HTTP function costs at least.
//! `scripts/bench` prints every function's figures beside this one's.
use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("{}")))
    }))
    .await
}
