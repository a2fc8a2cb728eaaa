//! `hookbridge check [--online]`: is the config ready to go live? It loads and builds the config
//! (as `config check` does) and says, for each source, what to paste there; `--online` has
//! each configured connector ask its system read-only questions ([`hookbridge::preflight`]).
//! `--stack NAME` takes the stack's URLs (the config is config/stack/hookbridge.toml unless
//! --config says otherwise, its secrets read with your AWS credentials); `--from-stack` has the
//! stack's sender functions ask instead, so the systems see the address the stack calls from.
//! Exits non-zero when any answer is ✖, so it can gate a deploy.

use std::sync::Arc;

use clap::Args;
use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets};
use hookbridge::lambda::PreflightAsk;
use hookbridge::preflight::{self, Check};

use crate::Result;

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: crate::setup::StackConfig,
    /// Ask each configured system, read-only: credentials, ids, group chats, whether it takes
    /// calls from this address.
    #[arg(long)]
    online: bool,
    /// Also post a test message where only a real post can tell (robots).
    #[arg(long, requires = "online")]
    send_test: bool,
    /// At most this many mapped users are looked up per connector (each is an API call;
    /// DingTalk counts them against its monthly quota).
    #[arg(long, default_value_t = 20)]
    max_users: usize,
    /// The deployed stack: the URLs the sources are given come from its outputs.
    #[arg(long, conflicts_with = "url")]
    stack: Option<String>,
    /// Where the sources reach hookbridge instead (serve's address, or the stack's ApiUrl).
    #[arg(long)]
    url: Option<String>,
    /// Have the stack's sender functions ask (AWS Lambda Invoke), so that the systems see the
    /// stack's own egress address. Needs --stack and --online.
    #[arg(long, requires_all = ["stack", "online"])]
    from_stack: bool,
}

/// The stack output naming each connector's sender function: `connector=function …`.
pub const SENDER_FUNCTIONS: &str = "SenderFunctions";

pub async fn run(args: CheckArgs) -> Result<bool> {
    let file = args.config.config;
    let config = crate::load(Some(&file))?;
    let store = Arc::new(hookbridge::store::memory::MemoryStore::new());
    let app = App::build(config.clone(), store, &Secrets::default(), Parts::All).await?;
    let mut checks = vec![Check::pass(
        "config",
        format!(
            "{} loads: {} route(s), secrets resolved",
            file.display(),
            config.routes.len()
        ),
    )];
    let base = match (&args.stack, &args.url) {
        (None, None) => "<where the sources reach hookbridge>".to_owned(),
        (stack, url) => {
            crate::setup::deployment(stack.as_deref(), url.as_deref(), file.clone(), false)
                .await?
                .api
        }
    };
    checks.extend(sources(&app, &base));
    if args.online {
        let ask = PreflightAsk {
            send_test: args.send_test,
            max_users: args.max_users,
        };
        checks.extend(match (&args.stack, args.from_stack) {
            (Some(stack), true) => from_stack(stack, &config, ask).await?,
            _ => app.preflight(ask.send_test, ask.max_users).await,
        });
    }
    for c in &checks {
        println!("{c}");
    }
    Ok(!preflight::failed(&checks))
}

/// Where each configured source is to send its webhooks and how it proves itself;
/// `hookbridge setup <source>` prints what to paste (the secrets' values with --reveal).
fn sources(app: &App, base: &str) -> Vec<Check> {
    app.ingress
        .endpoints()
        .into_iter()
        .map(|(name, paths, credentials)| {
            let urls: Vec<String> = paths.iter().map(|p| format!("POST {base}{p}")).collect();
            Check::note(
                name,
                format!(
                    "{}, {credentials} (hookbridge setup {name} prints what to paste)",
                    urls.join(", ")
                ),
            )
        })
        .collect()
}

/// Invokes each configured connector's sender function in the stack with a preflight and
/// gathers what they answer.
async fn from_stack(stack: &str, config: &Config, ask: PreflightAsk) -> Result<Vec<Check>> {
    let outputs = crate::setup::stack_outputs(stack).await?;
    let functions = outputs
        .iter()
        .find(|(k, _)| k == SENDER_FUNCTIONS)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            format!("stack {stack} has no {SENDER_FUNCTIONS} output: deploy this version")
        })?;
    let lambda = aws_sdk_lambda::Client::new(hookbridge::http::aws_config().await);
    let payload = serde_json::to_vec(&serde_json::json!({ "preflight": ask }))?;
    let mut out = vec![];
    for connector in config.connectors.configured() {
        let Some(function) = functions
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(connector)?.strip_prefix('='))
        else {
            out.push(Check::fail(
                connector,
                format!("the stack has no sender for {connector}"),
            ));
            continue;
        };
        let answer = lambda
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.clone()))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "invoking {function}: {}",
                    aws_sdk_lambda::error::DisplayErrorContext(e)
                )
            })?;
        if let Some(error) = answer.function_error() {
            out.push(Check::fail(
                connector,
                format!("{function} failed ({error}): its log in CloudWatch says why"),
            ));
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            checks: Vec<Check>,
        }
        let bytes = answer.payload().map(|b| b.as_ref()).unwrap_or_default();
        let answer: Answer = serde_json::from_slice(bytes)
            .map_err(|e| format!("{function} answered something else: {e}"))?;
        out.extend(answer.checks);
    }
    Ok(out)
}
