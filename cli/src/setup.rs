//! `hookbridge setup <part>`: what to enter in each system's console for a deployment, from
//! the stack's outputs (`--stack`) or a base URL (`--url`) and the config the functions run.
//! Each part writes its own instructions (`setup` in its room); this file finds the
//! deployment.

use std::path::PathBuf;

use clap::Args;
use clap::builder::PossibleValuesParser;
use hookbridge::tools::{Deployment, Egress};

use crate::Result;

#[derive(Args)]
pub struct Setup {
    /// The system to set up: a source's webhook URLs and secrets, and the address a connector's
    /// system must allow calls from.
    #[arg(value_parser = PossibleValuesParser::new(hookbridge::registry::names()))]
    part: String,
    /// The deployed stack: its outputs give the URLs (AWS credentials and region from the
    /// environment or ~/.aws, as for the AWS CLI).
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    stack: Option<String>,
    /// The base URL instead: the stack's ApiUrl output, or where `hookbridge serve` is
    /// reached from the source (for 浙政钉: http://<IP address>[:<port>]).
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    config: StackConfig,
    /// Print the secrets' values (read from Secrets Manager or the environment) instead of
    /// where each is kept.
    #[arg(long)]
    reveal: bool,
}

/// The config the deployed functions run (`setup`, `check`).
#[derive(Args)]
pub struct StackConfig {
    /// The config file the functions run.
    #[arg(
        long,
        env = "HOOKBRIDGE_CONFIG_FILE",
        default_value = "config/stack/hookbridge.toml"
    )]
    pub config: PathBuf,
}

/// The stack outputs read here (template.yaml `Outputs`).
pub const API_URL: &str = "ApiUrl";
pub const EGRESS_MODE: &str = "EgressMode";
pub const EGRESS_IP: &str = "EgressIp";
pub const DASHBOARD_URL: &str = "DashboardUrl";

pub async fn run(args: Setup) -> Result<()> {
    let config = crate::load(Some(&args.config.config))?;
    let at = deployment(
        args.stack.as_deref(),
        args.url.as_deref(),
        args.config.config,
        args.reveal,
    )
    .await?;
    let out =
        hookbridge::registry::setup(&args.part, &config.sources, &config.connectors, &at).await?;
    print!("{out}");
    if let (Some(dashboard), Some(stack)) = (at.outputs.get(DASHBOARD_URL), &args.stack) {
        println!(
            "\nWatch it: the stack's dashboard {dashboard}\nand the console on this machine: \
             hookbridge console --stack {stack}"
        );
    }
    Ok(())
}

/// The deployment of a stack (`--stack`) or at a URL (`--url`).
pub(crate) async fn deployment(
    stack: Option<&str>,
    url: Option<&str>,
    config_file: PathBuf,
    reveal: bool,
) -> Result<Deployment> {
    let (api, outputs, egress) = match (stack, url) {
        (Some(stack), _) => {
            let outputs: std::collections::BTreeMap<String, String> =
                stack_outputs(stack).await?.into_iter().collect();
            let api = outputs.get(API_URL).cloned().ok_or_else(|| {
                format!("stack {stack} has no {API_URL} output: is it a hookbridge stack?")
            })?;
            let egress = match (
                outputs.get(EGRESS_MODE).map(String::as_str),
                outputs.get(EGRESS_IP),
            ) {
                (_, Some(ip)) => Egress::Ip(ip.clone()),
                (Some("existing"), None) => Egress::TheirNat,
                _ => Egress::Shared,
            };
            (api, outputs, egress)
        }
        (None, Some(url)) => (
            url.trim_end_matches('/').to_owned(),
            Default::default(),
            Egress::Host,
        ),
        (None, None) => return Err("give --stack or --url".into()),
    };
    Ok(Deployment {
        api,
        outputs,
        egress,
        config_file,
        reveal,
    })
}

/// The outputs of `stack`, by name.
pub(crate) async fn stack_outputs(stack: &str) -> Result<Vec<(String, String)>> {
    let client = aws_sdk_cloudformation::Client::new(hookbridge::http::aws_config().await);
    let described = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            format!(
                "stack {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(e)
            )
        })?;
    let outputs: Vec<(String, String)> = described
        .stacks()
        .first()
        .ok_or_else(|| format!("no stack {stack}"))?
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    Ok(outputs)
}
