//! `hookbridge console --table T` (or `--stack NAME`): the console's pages on 127.0.0.1, from
//! the operator's machine, against the stack's table with the operator's AWS credentials, so
//! the stack itself exposes nothing new.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use hookbridge::app::{App, Parts};
use hookbridge::config::Secrets;
use hookbridge::console::{self, Guard};

use crate::Result;

#[derive(Args)]
pub struct ConsoleArgs {
    /// The stack's DynamoDB table (credentials and region from the usual AWS chain;
    /// AWS_ENDPOINT_URL points at DynamoDB Local).
    #[arg(long, conflicts_with = "stack", required_unless_present = "stack")]
    table: Option<String>,
    /// The stack's name: its table and dashboard are read from its outputs.
    #[arg(long)]
    stack: Option<String>,
    /// The config, for recall (the connectors' credentials) and the preview (routes,
    /// templates). Default: the built-in example.
    #[arg(long, env = "HOOKBRIDGE_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Where to listen: a loopback address only.
    #[arg(long, default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
}

pub async fn run(args: ConsoleArgs) -> Result<()> {
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen {}: the console listens on this machine only (127.0.0.1 or ::1)",
            args.listen
        )
        .into());
    }
    let (table, dashboard) = match (args.table, &args.stack) {
        (Some(table), _) => (table, None),
        (None, Some(stack)) => {
            let outputs = crate::setup::stack_outputs(stack).await?;
            let output = |key: &str| {
                outputs
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let table = output("TableName")
                .ok_or_else(|| format!("stack {stack} has no TableName output"))?;
            (table, output(crate::setup::DASHBOARD_URL))
        }
        (None, None) => return Err("give --table or --stack".into()),
    };
    let config = crate::load(args.config.as_ref())?;
    let retention = config.store.retention();
    let store = hookbridge::store::dynamodb::DynamoStore::from_env(table.clone(), retention).await;
    let app = App::build(config, Arc::new(store), &Secrets::default(), Parts::All).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let routes = console::router(Arc::new(app), Guard::local(addr), dashboard);
    println!("console for table {table}: http://{addr}/console");
    axum::serve(
        listener,
        routes.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
