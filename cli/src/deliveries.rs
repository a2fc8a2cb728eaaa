//! `hookbridge deliveries`: list, show, replay and recall deliveries where they are stored (the
//! data directory of `serve`, or the stack's DynamoDB table) or through a running `serve`. The
//! actions themselves are `hookbridge::operator`'s; this file picks the store and prints.

use hookbridge::logging::escape;
use std::path::PathBuf;
use std::sync::Arc;
use unicode_width::UnicodeWidthStr;

use clap::{Args, Subcommand};
use hookbridge::app::{App, Parts};
use hookbridge::config::{Config, Secrets, StoreConfig};
use hookbridge::event::{
    Delivery, DeliveryFilter, DeliveryKey, Event, EventFilter, Status, beijing_month, now_ms,
};
use hookbridge::operator::{self, OperatorError};
use hookbridge::store::memory::MemoryStore;
use hookbridge::store::{DeliveryStore, Store, StoreError};

use crate::Result;

/// Where the deliveries are. Without --url or --table: the data directory.
#[derive(Args)]
pub struct Where {
    /// A running `hookbridge serve` (another machine's: set HOOKBRIDGE_OPERATOR_TOKEN to its
    /// server.operator_token).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The stack's DynamoDB table (credentials and region from the usual AWS chain;
    /// AWS_ENDPOINT_URL points at DynamoDB Local).
    #[arg(long, global = true)]
    table: Option<String>,
    /// serve's data directory. When serve is running on it, it is asked instead.
    #[arg(long, global = true, env = "HOOKBRIDGE_DATA")]
    data: Option<PathBuf>,
    /// Config file: for recall, the connector's credentials; for --table, the retention.
    #[arg(long, global = true, env = "HOOKBRIDGE_CONFIG_FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Action {
    /// The most recently updated deliveries, newest first (the default).
    List(ListArgs),
    /// One delivery in full: the rendered request, result, receipts and replays.
    Show {
        /// `<pk>/<sk>`, as `list` prints it.
        id: String,
        /// The stored record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Dead deliveries sent again with a fresh attempt budget (the record keeps why they died);
    /// also pending ones left behind for 15 minutes (their stream record ended in the stack's
    /// failure queue).
    Replay {
        /// `<pk>/<sk>`; or leave it out and give --status dead (or pending) with other filters.
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Takes a sent message back (DingTalk within 24 h, 浙政钉); noted on the delivery.
    Recall {
        /// `<pk>/<sk>` of a sent delivery.
        id: String,
    },
}

#[derive(Args, Default)]
pub struct FilterArgs {
    /// pending, sending, sent, checking, dry_run, skipped, retrying, waiting, undelivered,
    /// dead or recalled.
    #[arg(long)]
    status: Option<Status>,
    /// hap, dms, govding…
    #[arg(long)]
    source: Option<String>,
    /// dingtalk, zentao, govding…
    #[arg(long)]
    connector: Option<String>,
    /// Updated since: 90s, 30m, 12h, 7d ago, or 2026-12-01 / an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

#[derive(Args, Default)]
pub struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The full JSON, rendered requests and results included.
    #[arg(long)]
    json: bool,
}

impl FilterArgs {
    fn filter(&self) -> Result<DeliveryFilter> {
        Ok(DeliveryFilter {
            status: self.status,
            source: self.source.clone(),
            connector: self.connector.clone(),
            since: self
                .since
                .as_deref()
                .map(|s| operator::since(s, now_ms()))
                .transpose()?,
        })
    }
}

/// The deliveries, in a store or behind a running serve.
enum Deliveries {
    Stored {
        store: Arc<dyn Store>,
        config: Option<Box<Config>>,
    },
    Remote {
        base: String,
        client: reqwest::Client,
    },
}

pub async fn run(at: Where, action: Option<Action>, data_dir: PathBuf) -> Result<()> {
    let config = at
        .config
        .as_ref()
        .map(|p| crate::load(Some(p)).map(Box::new))
        .transpose()?;
    let deliveries = open(at, config, data_dir).await?;
    match action.unwrap_or(Action::List(ListArgs {
        limit: 50,
        ..ListArgs::default()
    })) {
        Action::List(args) => {
            let list = deliveries.list(&args.filter.filter()?, args.limit).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&list);
            }
        }
        Action::Show { id, json } => {
            let d = deliveries.show(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print_one(&d)?;
            }
        }
        Action::Replay { id: Some(id), .. } => {
            let d = deliveries.replay(&id).await?;
            println!(
                "replayed {}: pending again, attempt budget reset (it had spent {}: {})",
                escape(&id),
                d.replays.last().map_or(0, |r| r.attempts),
                escape(
                    d.replays
                        .last()
                        .and_then(|r| r.error.as_deref())
                        .unwrap_or("no reason recorded")
                )
            );
        }
        Action::Replay { id: None, filter } => {
            let Some(status @ (Status::Dead | Status::Pending)) = filter.status else {
                return Err("give a delivery id, or --status dead or pending (with any other filter) to replay every dead delivery, or every one left behind pending, that matches".into());
            };
            let found = deliveries.list(&filter.filter()?, usize::MAX).await?;
            let mut replayed = 0;
            for d in &found {
                let id = format!("{}/{}", d.pk, d.sk);
                match deliveries.replay(&id).await {
                    Ok(_) => replayed += 1,
                    Err(e) => eprintln!("hookbridge: {}: {}", escape(&id), escape(&e.to_string())),
                }
            }
            println!(
                "replayed {replayed} of {} {} deliveries",
                found.len(),
                status.as_str()
            );
        }
        Action::Recall { id } => {
            let d = deliveries.recall(&id).await?;
            let note = d.receipts.last().cloned().unwrap_or_default();
            println!(
                "recalled {}: {}",
                escape(&id),
                escape(&note["result"].to_string())
            );
        }
    }
    Ok(())
}

/// `hookbridge status`: the API calls counted against each quota in `month` (default: this
/// month, Beijing time).
pub async fn status(at: Where, month: Option<String>, json: bool, data_dir: PathBuf) -> Result<()> {
    let month = month.unwrap_or_else(|| beijing_month(now_ms()));
    let deliveries = open(at, None, data_dir).await?;
    let mut usage = match &deliveries {
        Deliveries::Stored { store, .. } => store.usage_in(&month).await?,
        Deliveries::Remote { .. } => {
            deliveries
                .call(reqwest::Method::GET, "/status", &[("month", month.clone())])
                .await?
        }
    };
    usage.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<7} {:>8} {:>8} USED",
        "API ACCOUNT", "MONTH", "CALLS", "QUOTA"
    );
    for u in &usage {
        let used = match u.quota {
            0 => "-".to_owned(),
            q => format!("{} %", u.calls * 100 / q),
        };
        println!(
            "{} {:<7} {:>8} {:>8} {used}",
            cell(&u.name, 40),
            escape(&u.period),
            u.calls,
            u.quota
        );
    }
    if usage.is_empty() {
        println!("no API calls counted in {month}");
    }
    Ok(())
}

/// `hookbridge events`'s choices.
#[derive(Args)]
pub struct EventArgs {
    /// hap, dms, govding…
    #[arg(long)]
    source: Option<String>,
    /// The source's kind: todo, mention, alert, unreadable…
    #[arg(long)]
    kind: Option<String>,
    /// Part of the source's id of it (HAP's messageId, an alert's fingerprint…).
    #[arg(long)]
    key: Option<String>,
    /// Received since: 90s, 30m, 12h, 7d ago, or 2026-12-01 / an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// The events as JSON, each body as received.
    #[arg(long)]
    json: bool,
}

/// `hookbridge events`: what came in, newest first, those that made no delivery too (an
/// unreadable body, an event no route takes), each body's first characters escaped.
pub async fn events(at: Where, args: EventArgs, data_dir: PathBuf) -> Result<()> {
    let filter = EventFilter {
        source: args.source,
        kind: args.kind,
        key: args.key,
        since: args
            .since
            .as_deref()
            .map(|s| operator::since(s, now_ms()))
            .transpose()?,
    };
    let list: Vec<Event> = match open(at, None, data_dir).await? {
        Deliveries::Stored { store, .. } => store.events(&filter, args.limit).await?,
        remote @ Deliveries::Remote { .. } => {
            let mut query = vec![("limit", args.limit.min(1_000_000).to_string())];
            for (k, v) in [
                ("source", &filter.source),
                ("kind", &filter.kind),
                ("key", &filter.key),
            ] {
                if let Some(v) = v {
                    query.push((k, v.clone()));
                }
            }
            if let Some(t) = filter.since {
                query.push(("since", t.to_string()));
            }
            remote.call(reqwest::Method::GET, "/events", &query).await?
        }
    };
    if args.json {
        println!("{}", pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<19} {:<12} {:<12} {:<40} BODY",
        "RECEIVED", "SOURCE", "KIND", "KEY"
    );
    for e in &list {
        let body: String = e.raw.chars().take(60).collect();
        println!(
            "{} {} {} {} {}",
            operator::beijing_time(e.received_at),
            cell(&e.source, 12),
            cell(&e.kind, 12),
            cell(&e.key, 40),
            escape(&body)
        );
    }
    if list.is_empty() {
        println!("no events match");
    }
    Ok(())
}

/// The store named by `at`; for a data directory a running serve holds, that serve.
async fn open(at: Where, config: Option<Box<Config>>, data_dir: PathBuf) -> Result<Deliveries> {
    let remote = |base: String| -> Result<Deliveries> {
        Ok(Deliveries::Remote {
            base: base.trim_end_matches('/').to_owned(),
            client: hookbridge::http::client(std::time::Duration::from_secs(30))
                .map_err(|e| format!("HTTP client: {e}"))?,
        })
    };
    if let Some(url) = at.url {
        return remote(url);
    }
    if let Some(table) = at.table {
        // Only new items carry it (a recall's note does not): the default serves without --config.
        let retention = config.as_ref().map_or_else(
            || StoreConfig::default().retention(),
            |c| c.store.retention(),
        );
        let store = hookbridge::store::dynamodb::DynamoStore::from_env(table, retention).await;
        return Ok(Deliveries::Stored {
            store: Arc::new(store),
            config,
        });
    }
    let dir = at.data.unwrap_or(data_dir);
    let file = dir.join(crate::DATA_FILE);
    if !file.exists() {
        return Err(format!(
            "no data in {} (give --data DIR, --table NAME or --url URL)",
            dir.display()
        )
        .into());
    }
    match MemoryStore::durable(&file) {
        Ok((store, _feed)) => Ok(Deliveries::Stored {
            store: Arc::new(store),
            config,
        }),
        Err(StoreError::InUse(_)) => {
            let url = std::fs::read_to_string(dir.join(crate::SERVE_URL_FILE)).map_err(|_| {
                format!(
                    "{} is in use by a running hookbridge serve: ask it with --url",
                    dir.display()
                )
            })?;
            eprintln!(
                "hookbridge serve is running on {}: asking it at {}",
                dir.display(),
                url.trim()
            );
            remote(url.trim().to_owned())
        }
        Err(e) => Err(e.into()),
    }
}

impl Deliveries {
    async fn list(&self, filter: &DeliveryFilter, limit: usize) -> Result<Vec<Delivery>> {
        match self {
            Deliveries::Stored { store, .. } => Ok(store.list(filter, limit).await?),
            Deliveries::Remote { .. } => {
                let mut query = vec![("limit", limit.min(1_000_000).to_string())];
                if let Some(s) = filter.status {
                    query.push(("status", s.as_str().to_owned()));
                }
                for (k, v) in [("source", &filter.source), ("connector", &filter.connector)] {
                    if let Some(v) = v {
                        query.push((k, v.clone()));
                    }
                }
                if let Some(t) = filter.since {
                    query.push(("since", t.to_string()));
                }
                self.call(reqwest::Method::GET, "/deliveries", &query).await
            }
        }
    }

    async fn show(&self, id: &str) -> Result<Delivery> {
        match self {
            Deliveries::Stored { store, .. } => {
                Ok(operator::show(store.as_ref(), &key(id)?).await?)
            }
            Deliveries::Remote { .. } => {
                self.call(
                    reqwest::Method::GET,
                    "/deliveries/show",
                    &[("id", id.to_owned())],
                )
                .await
            }
        }
    }

    async fn replay(&self, id: &str) -> Result<Delivery> {
        match self {
            Deliveries::Stored { store, .. } => {
                let store: &dyn DeliveryStore = store.as_ref();
                Ok(operator::replay(store, &key(id)?, now_ms()).await?)
            }
            Deliveries::Remote { .. } => {
                self.call(
                    reqwest::Method::POST,
                    "/deliveries/replay",
                    &[("id", id.to_owned())],
                )
                .await
            }
        }
    }

    async fn recall(&self, id: &str) -> Result<Delivery> {
        match self {
            Deliveries::Stored { store, config } => {
                let key = key(id)?;
                let d = operator::show(store.as_ref(), &key).await?;
                operator::recallable(&d)?;
                let config = *config
                    .clone()
                    .ok_or("recall needs --config: the connector's credentials")?;
                let connector = config
                    .connectors
                    .configured()
                    .into_iter()
                    .find(|c| *c == d.connector)
                    .ok_or_else(|| format!("the config has no [connectors.{}]", d.connector))?;
                let app = App::build(
                    config,
                    store.clone(),
                    &Secrets::default(),
                    Parts::Connector(connector),
                )
                .await?;
                Ok(operator::recall(&app, &key, now_ms()).await?)
            }
            Deliveries::Remote { .. } => {
                self.call(
                    reqwest::Method::POST,
                    "/deliveries/recall",
                    &[("id", id.to_owned())],
                )
                .await
            }
        }
    }

    /// A request to the running serve; its JSON error becomes the error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let Deliveries::Remote { base, client } = self else {
            unreachable!("only a remote serve is called");
        };
        let url = format!("{base}{path}");
        let post = method == reqwest::Method::POST;
        let mut req = client.request(method, &url).query(query);
        if post {
            // serve takes an operator's change only as JSON: a web page cannot send that.
            req = req.json(&serde_json::json!({}));
        }
        if let Ok(token) = std::env::var("HOOKBRIDGE_OPERATOR_TOKEN") {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e} (is `hookbridge serve` running?)"))?;
        let status = resp.status();
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let said = escape(body["error"].as_str().unwrap_or("no reason given"));
            return Err(format!("{url}: HTTP {status}: {said}").into());
        }
        Ok(resp.json().await?)
    }
}

fn key(id: &str) -> std::result::Result<DeliveryKey, OperatorError> {
    operator::parse_id(id)
}

/// Text that came from a request (ids, recipients, reasons that quote them) escaped as the
/// log escapes it, so it cannot start a line of its own or drive the terminal, and padded to
/// `width` terminal columns (a CJK character takes two) so the columns after it stay aligned.
fn cell(text: &str, width: usize) -> String {
    let text = escape(text);
    let used = UnicodeWidthStr::width(text.as_str());
    format!("{text}{}", " ".repeat(width.saturating_sub(used)))
}

/// Pretty JSON, each line escaped: JSON escapes control characters but not, say, a
/// right-to-left override.
fn pretty(v: &impl serde::Serialize) -> Result<String> {
    let text = serde_json::to_string_pretty(v)?;
    Ok(text.lines().map(escape).collect::<Vec<_>>().join("\n"))
}

fn print_table(list: &[Delivery]) {
    println!(
        "{} {} {} {} {} DELIVERY / RESULT",
        cell("STATUS", 11),
        cell("CONN", 8),
        cell("ACTION", 13),
        cell("TRY", 3),
        cell("RECIPIENTS", 24)
    );
    for d in list {
        let outcome = d
            .last_error
            .clone()
            .or_else(|| d.result.as_ref().map(summary))
            .unwrap_or_default();
        println!(
            "{} {} {} {} {} {}/{}  {}",
            cell(d.status.as_str(), 11),
            cell(&d.connector, 8),
            cell(d.action.as_str(), 13),
            cell(&d.attempts.to_string(), 3),
            cell(&d.recipients.join(","), 24),
            escape(&d.pk),
            escape(&d.sk),
            escape(&outcome)
        );
    }
}

fn print_one(d: &Delivery) -> Result<()> {
    let time = operator::beijing_time;
    println!("delivery   {}/{}", escape(&d.pk), escape(&d.sk));
    println!(
        "connector  {} ({})",
        escape(&d.connector),
        escape(d.action.as_str())
    );
    println!(
        "status     {} after {} attempt(s)",
        d.status.as_str(),
        d.attempts
    );
    println!("recipients {}", escape(&d.recipients.join(", ")));
    println!("created    {}", time(d.created_at));
    println!("updated    {}", time(d.updated_at));
    if let Some(at) = d.next_attempt_at {
        println!("next       {}", time(at));
    }
    if let Some(e) = &d.last_error {
        println!("reason     {}", escape(e));
    }
    if let Some(r) = &d.result {
        println!("result     {}", escape(&r.to_string()));
        // What the receiving system reported per person (DingTalk `getsendresult`).
        if let Some(by_user) = r.get("outcomes").and_then(|o| o.as_object()) {
            for (user, outcome) in by_user {
                println!(
                    "  {} {}",
                    cell(user, 20),
                    escape(outcome.as_str().unwrap_or_default())
                );
            }
        }
    }
    for r in &d.receipts {
        println!("receipt    {}", escape(&r.to_string()));
    }
    for r in &d.replays {
        println!(
            "replayed   {} after {} attempt(s): {}",
            time(r.at),
            r.attempts,
            escape(r.error.as_deref().unwrap_or("no reason recorded"))
        );
    }
    println!("request\n{}", pretty(&d.message)?);
    Ok(())
}

/// One line for a result: the task ids, or the paths of the requests a dry run rendered.
fn summary(result: &serde_json::Value) -> String {
    match result.get("requests").and_then(|r| r.as_array()) {
        Some(reqs) => reqs
            .iter()
            .map(|r| {
                let task = r["body"]
                    .get("task_id")
                    .map(|t| format!(" task_id={t}"))
                    .unwrap_or_default();
                format!("would POST {}{task}", r["path"].as_str().unwrap_or("?"))
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => result.to_string(),
    }
}
