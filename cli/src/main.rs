//! The `hookbridge` command: run the whole pipeline locally and look at what it did.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets};
use hookbridge::connectors::ConnectorPart;
use hookbridge::connectors::zentao::ZenTao;
use hookbridge::event::Delivery;
use hookbridge::local::Local;
use hookbridge::sources::dms;

const EXAMPLE_CONFIG: &str = include_str!("../../config/example.toml");

#[derive(Parser)]
#[command(
    name = "hookbridge",
    version,
    about = "Notifications from HAP, Alibaba Cloud DMS and 浙政钉 into DingTalk, 浙政钉, ZenTao and DingTalk group robots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run webhooks, senders and sweeper in one process, every acknowledged request on disk.
    Serve {
        /// Config file; without it, the built-in example (DingTalk in dry-run).
        #[arg(long, env = "HOOKBRIDGE_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the data file (events, deliveries, tokens, dedupe keys), every
        /// acknowledged request committed to it first. Default: $XDG_DATA_HOME/hookbridge, or
        /// ~/.local/share/hookbridge.
        #[arg(long, env = "HOOKBRIDGE_DATA", conflicts_with = "memory")]
        data: Option<PathBuf>,
        /// Keep everything in memory only: lost on exit (for experiments).
        #[arg(long)]
        memory: bool,
    },
    /// Deliveries: list, show, replay (dead ones) or recall (sent ones), in serve's data
    /// directory (the default), the stack's DynamoDB table (--table) or a running serve (--url).
    Deliveries {
        #[command(flatten)]
        at: deliveries::Where,
        #[command(subcommand)]
        action: Option<deliveries::Action>,
    },
    /// API calls counted against each quota this month (DingTalk: 5 000 calls a month per
    /// organisation), from serve's data directory, the stack's table (--table) or a running
    /// serve (--url).
    Status {
        #[command(flatten)]
        at: deliveries::Where,
        /// Another month, YYYY-MM.
        #[arg(long)]
        month: Option<String>,
        /// The counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Config tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// What to paste into HAP, DMS or the 浙政钉 console: URLs from the deployed stack's
    /// outputs (--stack) or a base URL (--url), secrets as the config names them.
    Setup(setup::Setup),
    /// Is the config ready to go live? With --online, each configured system is asked
    /// (read-only) whether the credentials, ids and this address work; non-zero exit if not.
    Check(check::CheckArgs),
    /// Alibaba Cloud DMS tools.
    Dms {
        #[command(subcommand)]
        command: DmsCommand,
    },
    /// 浙政钉 gateway management: callback registration, failed callbacks, revokes.
    Govding {
        /// Config file with [sources.govding] (the path token) and [connectors.govding]
        /// (app_key, app_secret, base_url).
        #[arg(long, env = "HOOKBRIDGE_CONFIG_FILE")]
        config: PathBuf,
        #[command(subcommand)]
        command: GovdingCommand,
    },
    /// ZenTao / Xuanxuan discovery: the ids to put in routes and recipient maps.
    Zentao {
        /// Config file naming the instance (base_url, code, key).
        #[arg(long, env = "HOOKBRIDGE_CONFIG_FILE")]
        config: PathBuf,
        /// Which [connectors.zentao.<name>] (optional when there is one).
        #[arg(long)]
        instance: Option<String>,
        #[command(subcommand)]
        command: ZentaoCommand,
    },
}

#[derive(Subcommand)]
enum GovdingCommand {
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
    /// Recalls a sent work notification: a delivery in the stack's table (its bizMsgId, and
    /// msgType/msgApp from its receipts), or a bizMsgId with the values given.
    Revoke {
        /// `<pk>/<sk>` of the delivery, e.g. from `hookbridge deliveries`; read from the
        /// DynamoDB table TABLE_NAME (AWS credentials from the environment).
        #[arg(long, conflicts_with = "biz_msg_id")]
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

#[derive(Subcommand)]
enum ZentaoCommand {
    /// Group chats: gid and name (for `group = "<gid>"` in a route).
    Chats,
    /// Users: id and name, of everyone or of one group chat.
    Users {
        /// Only the members of this group chat.
        #[arg(long)]
        gid: Option<String>,
    },
}

#[derive(Subcommand)]
enum DmsCommand {
    /// Which signature construction, if any, produced a captured request's signatureText.
    /// The 签名密钥 configured in DMS is read from DMS_SIGNATURE_KEY, or else from the first
    /// line of stdin: never from the command line, where `ps` and the shell history show it.
    Verify {
        /// The request body DMS sent (e.g. saved from the log in signature_mode = "log").
        #[arg(long)]
        body: PathBuf,
        /// The webhook URL exactly as configured in DMS.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file: syntax, unknown keys, routes, templates, secrets it references;
    /// with --fixture, show exactly what each connector would send for that request body.
    Check {
        /// The config file; without it, the built-in example.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A request body (e.g. from tests/fixtures) to route and render.
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// The webhook path it is posted to; guessed from the body when left out.
        #[arg(long)]
        path: Option<String>,
    },
    /// Print the config's JSON Schema, for editors that complete and check hookbridge.toml
    /// (e.g. `hookbridge config schema > hookbridge.schema.json`, then `#:schema
    /// ./hookbridge.schema.json` as the file's first line).
    Schema,
    /// Print the configuration reference (Markdown: every key, who reads it, its type and
    /// default), generated from the code as docs/configuration.md is.
    Reference,
}

mod check;
mod deliveries;
mod reference;
mod setup;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The data file in serve's data directory.
const DATA_FILE: &str = "hookbridge.redb";
/// Where a running serve says where it listens, so `deliveries` can ask it while it holds the
/// data file.
const SERVE_URL_FILE: &str = "serve.url";

fn load(path: Option<&PathBuf>) -> Result<Config> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => EXAMPLE_CONFIG.to_owned(),
    };
    Ok(Config::from_toml(&text)?)
}

/// Where `serve` keeps its data unless told: the user's data directory.
fn data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("hookbridge"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".local/share/hookbridge"),
    }
}

async fn serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    data: Option<PathBuf>,
) -> Result<()> {
    // Handlers first: a SIGTERM that arrives just after the banner must stop serve cleanly,
    // not kill it with the default action.
    let stop = shutdown_signal()?;
    let mut config = load(config.as_ref())?;
    if let Some(l) = listen {
        config.server.listen = l;
    }
    let header = config.sources.hap.as_ref().map(|h| h.header.clone());
    let file = data.as_ref().map(|d| d.join(DATA_FILE));
    let local = match &file {
        Some(f) => Local::start_durable(config, f).await?,
        None => Local::start(config).await?,
    };
    // What to paste where, on stdout. A server keeps running when nobody reads it (a closed
    // pipe, `| head -1`), so write errors are ignored rather than fatal as println! makes them.
    let mut banner = vec![format!("hookbridge is listening on http://{}", local.addr)];
    banner.push(match &file {
        Some(f) => format!(
            "  data     {} (every acknowledged request is on disk)",
            f.display()
        ),
        None => "  data     in memory only (--memory): lost on exit".to_owned(),
    });
    for url in local.webhook_urls() {
        banner.push(format!("  webhook  POST {url}"));
    }
    if let Some(h) = header {
        banner.push(format!(
            "  HAP requests must carry the header {h} (see the config)"
        ));
    }
    for c in &local.app.dry_run {
        banner.push(format!(
            "  {c}: dry-run (no credentials): requests are recorded, not sent"
        ));
    }
    banner.push(format!(
        "  deliveries: GET http://{}/deliveries  or  hookbridge deliveries list",
        local.addr
    ));
    if let Some(dir) = &data {
        // Only a convenience for `hookbridge deliveries`: serve runs fine without it.
        let _ = std::fs::write(dir.join(SERVE_URL_FILE), format!("http://{}\n", local.addr));
    }
    let mut out = std::io::stdout().lock();
    for line in banner {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    drop(out);
    stop.await;
    eprintln!("hookbridge: stopping: finishing the requests and sends in flight");
    local.shutdown().await;
    if let Some(dir) = &data {
        let _ = std::fs::remove_file(dir.join(SERVE_URL_FILE));
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (what `kill`, systemd and container runtimes send), with both handlers
/// installed before this returns.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Parses the config and builds every component from it, which resolves every secret it
/// names; then renders `fixture`, if given, through the routes.
async fn check(
    config: Option<PathBuf>,
    fixture: Option<PathBuf>,
    path: Option<String>,
) -> Result<()> {
    let config = load(config.as_ref())?;
    let routes = config.routes.len();
    let store = std::sync::Arc::new(hookbridge::store::memory::MemoryStore::new());
    let app = App::build(config, store, &Secrets::default(), Parts::All).await?;
    println!(
        "config OK: {routes} route(s), webhooks {}",
        app.ingress.paths().join(" ")
    );
    for c in &app.dry_run {
        println!("  {c}: dry-run (no credentials)");
    }
    let Some(fixture) = fixture else {
        return Ok(());
    };
    let body = std::fs::read(&fixture).map_err(|e| format!("{}: {e}", fixture.display()))?;
    let (path, deliveries) =
        app.ingress
            .preview(path.as_deref(), &body, hookbridge::event::now_ms())?;
    println!(
        "\n{} → {path}: {} deliveries",
        fixture.display(),
        deliveries.len()
    );
    for d in deliveries {
        println!(
            "\n{} {} → {} [{}]",
            d.connector,
            d.action.as_str(),
            d.recipients.join(","),
            d.status.as_str()
        );
        match &d.last_error {
            Some(reason) => println!("  {reason}"),
            None => println!("{}", serde_json::to_string_pretty(&d.message)?),
        }
    }
    Ok(())
}

/// 浙政钉 management calls, signed with the config's app credentials.
async fn govding(config: &PathBuf, command: GovdingCommand) -> Result<()> {
    use hookbridge::connectors::govding::{self, Answer};
    use hookbridge::sources::govding::{callback_url, event_tags};

    let config = load(Some(config))?;
    let secrets = Secrets::default();
    let connector = config
        .connectors
        .govding
        .clone()
        .ok_or("the config has no [connectors.govding]")?;
    let show = |answer: Answer| match answer {
        Answer::Done(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
        Answer::AlreadySent(said) => said,
    };
    match command {
        GovdingCommand::Register {
            callback_base,
            tag,
            dry_run,
        } => {
            let source = config
                .sources
                .govding
                .as_ref()
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
            let gateway = govding::connect(&connector, &secrets).await?;
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
        GovdingCommand::Callbacks => {
            let gateway = govding::connect(&connector, &secrets).await?;
            println!("{}", show(gateway.callbacks().await?));
        }
        GovdingCommand::Failed { retry } => {
            let gateway = govding::connect(&connector, &secrets).await?;
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
        GovdingCommand::Revoke {
            delivery,
            biz_msg_id,
            msg_type,
            msg_app,
        } => {
            let (biz, msg_type, msg_app, from) = match (delivery, biz_msg_id) {
                (Some(key), _) => {
                    let d = stored_delivery(&config, &key).await?;
                    govding::revoke_params(&d, &connector)?
                }
                (None, Some(biz)) => {
                    let bare = Delivery {
                        result: Some(serde_json::json!({ "bizMsgId": biz })),
                        ..Delivery::new(
                            "",
                            "govding",
                            0,
                            hookbridge::event::Action::Send,
                            vec![],
                            serde_json::Value::Null,
                            0,
                        )
                    };
                    let (biz, _, derived, from) = govding::revoke_params(&bare, &connector)?;
                    match msg_app {
                        Some(app) => (biz, msg_type, app, "given"),
                        None => (biz, msg_type, derived, from),
                    }
                }
                (None, None) => return Err("give --delivery or --biz-msg-id".into()),
            };
            println!("revoking {biz}: msgType {msg_type}, msgApp {msg_app} ({from})");
            let gateway = govding::connect(&connector, &secrets).await?;
            let answer = gateway
                .revoke(&connector.tenant_id, &biz, &msg_type, &msg_app)
                .await?;
            println!("{}", show(answer));
        }
    }
    Ok(())
}

/// A delivery `<pk>/<sk>` from the stack's table (TABLE_NAME).
async fn stored_delivery(config: &Config, key: &str) -> Result<Delivery> {
    use hookbridge::store::HistoryStore;
    let (pk, sk) = key
        .rsplit_once('/')
        .ok_or("--delivery is <pk>/<sk>, e.g. EVT#hap#m1/DLV#govding#000")?;
    let table = std::env::var("TABLE_NAME").map_err(|_| "set TABLE_NAME to the stack's table")?;
    let store =
        hookbridge::store::dynamodb::DynamoStore::from_env(table, config.store.retention()).await;
    store
        .deliveries_of(pk)
        .await?
        .into_iter()
        .find(|d| d.sk == sk)
        .ok_or_else(|| format!("no delivery {key}").into())
}

/// The `eventCallbackFailedId`s of a failed-callbacks listing, wherever the list sits in it.
fn failed_ids(v: &serde_json::Value) -> Vec<String> {
    let list = v
        .as_array()
        .or_else(|| v.get("data").and_then(serde_json::Value::as_array))
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|item| match item.get("eventCallbackFailedId")? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// Lists group chats or users of a ZenTao instance, with the key from the config.
async fn zentao(config: &PathBuf, instance: Option<String>, command: ZentaoCommand) -> Result<()> {
    use hookbridge::connectors::zentao::{self, UsersBy};
    use hookbridge::logging::escape;

    let config = load(Some(config))?;
    let instances = config
        .connectors
        .zentao
        .ok_or("the config has no [connectors.zentao.<name>] instance")?;
    let name = ZenTao::render(&instances)
        .target(instance.as_deref(), None)
        .map_err(|e| format!("{e}: pass --instance"))?
        .instance
        .unwrap_or_default();
    let settings = instances[&name].clone();
    settings.key.as_ref().ok_or("this instance has no key")?;
    let resolved = zentao::resolve(&settings, &Secrets::default()).await?;
    let users_by = settings.users_by;
    // One process: its own marks keep time tokens increasing.
    let marks = std::sync::Arc::new(hookbridge::store::memory::MemoryStore::new());
    let client = ZenTao::new(vec![(name.clone(), settings, resolved)], marks)?;
    let gid = match &command {
        ZentaoCommand::Chats => {
            println!("{:<38} NAME", "gid");
            for (gid, group) in client.group_chats(&name).await? {
                println!("{:<38} {}", escape(&gid), escape(&group));
            }
            return Ok(());
        }
        ZentaoCommand::Users { gid } => gid,
    };
    let members = client.users(&name, gid.as_deref()).await?;
    if let Some(gid) = gid
        && members.is_empty()
    {
        return Err(format!(
            "ZenTao lists no members for group chat {}: it does not exist, was dismissed, or \
             everyone left. ZenTao would send a message for it to every active user, so \
             hookbridge refuses to send to it",
            escape(gid)
        )
        .into());
    }
    // Accounts come only from the REST API, through the instance's directory login.
    let accounts: std::collections::BTreeMap<String, String> = client
        .directory(&name)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|u| (u.id, u.account))
        .collect();
    let (maps, column) = match users_by {
        UsersBy::Account => ("account", "ACCOUNT"),
        UsersBy::Id => ("id", "ID"),
    };
    println!("{:<24} {:<10} NAME", "ACCOUNT", "ID");
    for (id, realname) in &members {
        let account = accounts.get(id).map_or("?", String::as_str);
        println!(
            "{:<24} {:<10} {}",
            escape(account),
            escape(id),
            escape(realname)
        );
    }
    println!(
        "\nThis instance has users_by = \"{maps}\": routes' users and [recipients.zentao.map] take \
         the {column} column."
    );
    if accounts.is_empty() {
        println!(
            "ZenTao's im API lists no accounts (shown as ?): add a read-only login to the instance, \
             directory = {{ account = \"…\", password = \"env:…\" }}, with the company-browse \
             privilege, to see them; an account ZenTao does not know is answered success and \
             reaches nobody."
        );
    }
    Ok(())
}

/// The config's JSON Schema, from the config types and their doc comments.
fn config_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is JSON")
}

/// The DMS 签名密钥: `DMS_SIGNATURE_KEY`, or the first line of stdin.
fn signature_key() -> Result<String> {
    if let Some(key) = std::env::var("DMS_SIGNATURE_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        return Ok(key);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("DMS 签名密钥 (read here, never from the command line): ");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let key = line.trim_end_matches(['\r', '\n']).to_owned();
    if key.is_empty() {
        return Err("no key: set DMS_SIGNATURE_KEY or give the 签名密钥 on stdin".into());
    }
    Ok(key)
}

/// Runs every known construction over a captured DMS request and says which matched.
fn dms_verify(body: &PathBuf, key: &str, url: Option<&str>) -> Result<()> {
    let bytes = std::fs::read(body).map_err(|e| format!("{}: {e}", body.display()))?;
    let envelope = dms::Envelope::read(&bytes)
        .map_err(|e| format!("{}: not a DMS webhook body: {e}", body.display()))?;
    let signature = envelope
        .signature_text()?
        .ok_or("the body has no signatureText")?;
    let event = envelope.event_json();
    let tried = dms::constructions(event, key, url).len();
    let found = dms::matching(event, key, url, &signature);
    if found.is_empty() {
        let hint = if url.is_none() {
            " (give --url to try the constructions that sign it)"
        } else {
            ""
        };
        return Err(format!("no construction of {tried} matched{hint}: check the key, and the URL exactly as configured in DMS").into());
    }
    println!("matched: {}", found.join(", "));
    println!(
        "pin it with  signature_variant = \"{}\"  in [sources.dms]",
        found[0]
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    hookbridge::logging::init_text();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            data,
            memory,
        } => {
            serve(
                config,
                listen,
                (!memory).then(|| data.unwrap_or_else(data_dir)),
            )
            .await
        }
        Command::Deliveries { at, action } => deliveries::run(at, action, data_dir()).await,
        Command::Status { at, month, json } => {
            deliveries::status(at, month, json, data_dir()).await
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    config,
                    fixture,
                    path,
                },
        } => check(config, fixture, path).await,
        Command::Config {
            command: ConfigCommand::Schema,
        } => serde_json::to_string_pretty(&config_schema())
            .map(|schema| println!("{schema}"))
            .map_err(Into::into),
        Command::Config {
            command: ConfigCommand::Reference,
        } => {
            print!("{}", reference::markdown(&config_schema()));
            Ok(())
        }
        Command::Dms {
            command: DmsCommand::Verify { body, url },
        } => signature_key().and_then(|key| dms_verify(&body, &key, url.as_deref())),
        Command::Setup(args) => setup::run(args).await,
        Command::Check(args) => match check::run(args).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("some checks failed (✖): fix them and run it again".into()),
            Err(e) => Err(e),
        },
        Command::Govding { config, command } => govding(&config, command).await,
        Command::Zentao {
            config,
            instance,
            command,
        } => zentao(&config, instance, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// `--help` explains every command and every flag: none is left for the reader to guess.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = vec![];
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:#?}");
    }

    /// Words as a shell splits them, for the documented command lines: quotes, no expansion.
    fn words(line: &str) -> Vec<String> {
        let (mut words, mut word, mut quote, mut started) = (vec![], String::new(), None, false);
        for c in line.chars() {
            match (quote, c) {
                (None, '\'' | '"') => (quote, started) = (Some(c), true),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => {
                    if started {
                        words.push(std::mem::take(&mut word));
                    }
                    started = false;
                }
                (_, c) => (word, started) = (word + &c.to_string(), true),
            }
        }
        if started {
            words.push(word);
        }
        words
    }

    /// The schema editors use knows every source and connector the registry has, with the
    /// same strictness as the config's loader (unknown keys refused).
    #[test]
    fn the_config_schema_has_every_part_and_refuses_unknown_keys() {
        let schema = super::config_schema();
        assert_eq!(schema["additionalProperties"], false);
        let defs = &schema["$defs"];
        for (section, names) in [
            (
                "Sources",
                hookbridge::registry::TEMPLATES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>(),
            ),
            (
                "Connectors",
                hookbridge::registry::CONNECTORS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect(),
            ),
        ] {
            assert_eq!(defs[section]["additionalProperties"], false, "{section}");
            for name in names {
                assert!(
                    defs[section]["properties"].get(name).is_some(),
                    "{section}.{name}"
                );
            }
        }
        // A field's doc comment is its description in the editor.
        assert!(
            defs["ZenTaoInstance"]["properties"]["directory"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("company-browse")),
            "{}",
            defs["ZenTaoInstance"]
        );
    }

    /// docs/configuration.md is what the code says of its config today.
    #[test]
    fn the_configuration_reference_is_current() {
        let generated = super::reference::markdown(&super::config_schema());
        assert!(
            generated == include_str!("../../docs/configuration.md"),
            "docs/configuration.md is stale: hookbridge config reference > docs/configuration.md"
        );
        for key in [
            "`server.hosts`",
            "`connectors.zentao.<name>.directory.account`",
            "`[[routes]].follow_up`",
            "`recipients.<name>.map`",
        ] {
            assert!(generated.contains(key), "{key}");
        }
    }

    /// The README and the pages under docs/.
    fn docs() -> Vec<(std::path::PathBuf, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    out.push((path, text));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut out = vec![(
            root.join("README.md"),
            std::fs::read_to_string(root.join("README.md")).unwrap(),
        )];
        walk(&root.join("docs"), &mut out);
        out
    }

    /// Every `hookbridge …` command the README and docs/ show is one the CLI takes as written.
    #[test]
    fn the_documented_commands_parse() {
        let mut checked = 0;
        for (file, text) in docs() {
            checked += commands_that_parse(&file, &text);
        }
        assert!(checked >= 15, "only {checked} documented commands found");
    }

    /// The `hookbridge …` lines in `text`'s code blocks: each must parse; how many did.
    fn commands_that_parse(file: &std::path::Path, text: &str) -> usize {
        let mut checked = 0;
        let mut in_code = false;
        for line in text.lines() {
            if line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            let command = line.split(" # ").next().unwrap().trim();
            if !in_code {
                continue;
            }
            // Environment assignments before the command, as in `KEY=v hookbridge …`.
            let Some(at) = command.find("hookbridge ") else {
                continue;
            };
            let before = &command[..at];
            if !(before.is_empty() || before.ends_with("' ") && before.contains('=')) {
                continue;
            }
            let argv = words(&command[at..]);
            if argv.len() < 2 || argv.iter().any(|w| w.contains('…') || w.contains('[')) {
                continue;
            }
            if let Err(e) = super::Cli::try_parse_from(&argv) {
                panic!("{}: {line}\n{e}", file.display());
            }
            checked += 1;
        }
        checked
    }
}
