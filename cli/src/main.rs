//! The `hookbridge` command: run the whole pipeline locally and look at what it did.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets};
use hookbridge::local::Local;
use hookbridge::tools::Tool;

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
    /// Deliveries: list, show, replay (dead ones, and pending ones left behind) or recall (sent ones), in serve's data
    /// directory (the default), the stack's DynamoDB table (--table) or a running serve (--url).
    Deliveries {
        #[command(flatten)]
        at: deliveries::Where,
        #[command(subcommand)]
        action: Option<deliveries::Action>,
    },
    /// The operator console on 127.0.0.1 against the stack's table (--table or --stack).
    Console(console::ConsoleArgs),
    /// The events that came in, newest first, those that made no delivery too, from serve's
    /// data directory, the stack's table (--table) or a running serve (--url).
    Events {
        #[command(flatten)]
        at: deliveries::Where,
        #[command(flatten)]
        args: deliveries::EventArgs,
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
mod console;
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
    let config = Config::from_toml(&text)?;
    let unset = hookbridge::setup::unset_variables(&text);
    if !unset.is_empty() {
        return Err(format!(
            "the config names environment variables that are not set: {} (set each, or point \
             its env:NAME at another secret reference)",
            unset.join(", ")
        )
        .into());
    }
    Ok(config)
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
/// The config's JSON Schema, from the config types and their doc comments.
fn config_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is JSON")
}

#[tokio::main]
async fn main() -> ExitCode {
    hookbridge::logging::init_text();
    let tools = hookbridge::registry::tools();
    let matches = command(&tools).get_matches();
    let result = match matches.subcommand() {
        Some((name, args)) if let Some(tool) = tools.iter().find(|t| t.name() == name) => {
            tool.run(args.clone()).await
        }
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => run(cli).await,
            Err(e) => e.exit(),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The CLI's own commands and every part's ([`hookbridge::registry::tools`]).
fn command(tools: &[Tool]) -> clap::Command {
    tools
        .iter()
        .fold(Cli::command(), |cli, t| cli.subcommand(t.command.clone()))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
        Command::Console(args) => console::run(args).await,
        Command::Events { at, args } => deliveries::events(at, args, data_dir()).await,
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
        Command::Setup(args) => setup::run(args).await,
        Command::Check(args) => match check::run(args).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("some checks failed (✖): fix them and run it again".into()),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
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
        walk(
            &super::command(&hookbridge::registry::tools()),
            "",
            &mut missing,
        );
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
        let tools = hookbridge::registry::tools();
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
            if let Err(e) = super::command(&tools).try_get_matches_from(&argv) {
                panic!("{}: {line}\n{e}", file.display());
            }
            checked += 1;
        }
        checked
    }
}
