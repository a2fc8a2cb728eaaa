//! `hookbridge govding register|callbacks|failed|revoke`: 浙政钉 gateway management through the
//! connector's app: callback registration for the source's URL, failed callbacks, revokes.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Answer, GovDingConfig, connect, revoke_params};
use crate::event::{Action, Delivery};
use crate::setup::Secrets;
use crate::sources::govding::{GovDingConfig as GovDingSourceConfig, callback_url, event_tags};
use crate::tools::{Tool, ToolResult, section};

pub fn tool() -> Tool {
    Tool::new(
        "govding",
        "浙政钉 gateway management: callback registration, failed callbacks, revokes.",
        run,
    )
}

#[derive(clap::Args)]
struct Args {
    /// Config file with [sources.govding] (the path token) and [connectors.govding]
    /// (app_key, app_secret, base_url).
    #[arg(long, env = "HOOKBRIDGE_CONFIG_FILE")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Registers the callback URL for every eventTag hookbridge reads (or those given); the
    /// gateway checks that the URL answers before it accepts.
    Register {
        /// Where the gateway reaches hookbridge: http://<IP address>:<port> (the gateway takes
        /// IP-address URLs only); the path /govding/<token> is added.
        #[arg(long)]
        callback_base: String,
        /// Only these eventTags.
        #[arg(long)]
        tag: Vec<String>,
        /// Print the callback URL and the tags, call nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The registered callbacks.
    Callbacks,
    /// Callbacks that failed all of the gateway's retries.
    Failed {
        /// Have the gateway deliver this one (an eventCallbackFailedId), or `all`, again.
        #[arg(long)]
        retry: Option<String>,
    },
    /// Recalls a work notification sent some other way, by its bizMsgId. A delivery
    /// hookbridge sent is recalled with `hookbridge deliveries … recall <pk>/<sk>`.
    Revoke {
        /// Moved: `hookbridge deliveries --table T|--data D|--url U recall <pk>/<sk>` reads the
        /// delivery where every operator command does and marks it recalled.
        #[arg(long, conflicts_with = "biz_msg_id", hide = true)]
        delivery: Option<String>,
        /// The bizMsgId of a message sent some other way.
        #[arg(long, required_unless_present = "delivery")]
        biz_msg_id: Option<String>,
        /// The gateway's msgType of that message.
        #[arg(long, default_value = "workNotification")]
        msg_type: String,
        /// Default: the configured msg_app, else derived from the AppKey.
        #[arg(long)]
        msg_app: Option<String>,
    },
}

fn show(answer: Answer) -> String {
    match answer {
        Answer::Done(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
        Answer::AlreadySent(said) => said,
    }
}

async fn run(args: Args) -> ToolResult {
    let secrets = Secrets::default();
    let connector: GovDingConfig = section(&args.config, &["connectors", "govding"])?
        .ok_or("the config has no [connectors.govding]")?;
    match args.command {
        Command::Register {
            callback_base,
            tag,
            dry_run,
        } => {
            let source: GovDingSourceConfig = section(&args.config, &["sources", "govding"])?
                .ok_or("the config has no [sources.govding] (its path_token is in the URL)")?;
            let url = callback_url(&callback_base, &secrets.resolve(&source.path_token).await?);
            let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{callback_base}: {e}"))?;
            let is_ip = parsed.host_str().is_some_and(|h| {
                h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok()
            });
            if !is_ip {
                eprintln!(
                    "warning: the gateway accepts only IP-address callback URLs; {callback_base} is not one"
                );
            }
            let tags: Vec<String> = if tag.is_empty() {
                event_tags().map(str::to_owned).collect()
            } else {
                tag
            };
            println!("callbackUrl {url}");
            if dry_run {
                for t in &tags {
                    println!("  would register {t}");
                }
                return Ok(());
            }
            let gateway = connect(&connector, &secrets).await?;
            let mut failed = 0;
            for t in &tags {
                match gateway.register(t, &url).await {
                    Ok(answer) => println!("  registered {t}: {}", show(answer).replace('\n', " ")),
                    Err(e) => {
                        failed += 1;
                        println!("  NOT registered {t}: {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(
                    format!("{failed} of {} eventTags were not registered", tags.len()).into(),
                );
            }
        }
        Command::Callbacks => {
            let gateway = connect(&connector, &secrets).await?;
            println!("{}", show(gateway.callbacks().await?));
        }
        Command::Failed { retry } => {
            let gateway = connect(&connector, &secrets).await?;
            let listed = gateway.failed().await?;
            let ids: Vec<String> = match (&retry, &listed) {
                (Some(all), Answer::Done(v)) if all == "all" => failed_ids(v),
                (Some(id), _) => vec![id.clone()],
                (None, _) => {
                    println!("{}", show(listed));
                    return Ok(());
                }
            };
            for id in ids {
                gateway.retry(&id).await?;
                println!("retried {id}");
            }
        }
        Command::Revoke {
            delivery,
            biz_msg_id,
            msg_type,
            msg_app,
        } => {
            let (biz, msg_type, msg_app, from) = match (delivery, biz_msg_id) {
                (Some(key), _) => {
                    return Err(format!(
                        "a delivery hookbridge sent is recalled with `hookbridge deliveries \
                         --table T (or --data DIR, --url URL) --config C recall '{key}'`: it \
                         reads the delivery where every operator command does, and marks it recalled"
                    )
                    .into());
                }
                (None, Some(biz)) => {
                    let bare = Delivery {
                        result: Some(json!({ "bizMsgId": biz })),
                        ..Delivery::new("", "govding", 0, Action::Send, vec![], Value::Null, 0)
                    };
                    let (biz, _, derived, from) = revoke_params(&bare, &connector)?;
                    match msg_app {
                        Some(app) => (biz, msg_type, app, "given"),
                        None => (biz, msg_type, derived, from),
                    }
                }
                (None, None) => return Err("give --delivery or --biz-msg-id".into()),
            };
            println!("revoking {biz}: msgType {msg_type}, msgApp {msg_app} ({from})");
            let gateway = connect(&connector, &secrets).await?;
            let answer = gateway
                .revoke(&connector.tenant_id, &biz, &msg_type, &msg_app)
                .await?;
            println!("{}", show(answer));
        }
    }
    Ok(())
}

/// The `eventCallbackFailedId`s of a failed-callbacks listing, wherever the list sits in it.
fn failed_ids(v: &Value) -> Vec<String> {
    let list = v
        .as_array()
        .or_else(|| v.get("data").and_then(Value::as_array))
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|item| match item.get("eventCallbackFailedId")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}
