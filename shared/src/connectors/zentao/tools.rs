//! `hookbridge zentao chats|users`: the ids to put in routes and recipient maps, read from the
//! instance the config names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{UsersBy, ZenTao, resolve};
use crate::connectors::ConnectorPart;
use crate::logging::escape;
use crate::setup::Secrets;
use crate::store::memory::MemoryStore;
use crate::tools::{Tool, ToolResult, section};

pub fn tool() -> Tool {
    Tool::new(
        "zentao",
        "ZenTao / Xuanxuan discovery: the ids to put in routes and recipient maps.",
        run,
    )
}

#[derive(clap::Args)]
struct Args {
    /// Config file naming the instance (base_url, code, key).
    #[arg(long, env = "HOOKBRIDGE_CONFIG_FILE")]
    config: PathBuf,
    /// Which [connectors.zentao.<name>] (optional when there is one).
    #[arg(long)]
    instance: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Group chats: gid and name (for `group = "<gid>"` in a route).
    Chats,
    /// Users: id and name, of everyone or of one group chat.
    Users {
        /// Only the members of this group chat.
        #[arg(long)]
        gid: Option<String>,
    },
}

/// Lists group chats or users of a ZenTao instance, with the key from the config.
async fn run(args: Args) -> ToolResult {
    let instances: BTreeMap<String, super::ZenTaoInstance> =
        section(&args.config, &["connectors", "zentao"])?
            .ok_or("the config has no [connectors.zentao.<name>] instance")?;
    let name = ZenTao::render(&instances)
        .target(args.instance.as_deref(), None)
        .map_err(|e| format!("{e}: pass --instance"))?
        .instance
        .unwrap_or_default();
    let settings = instances[&name].clone();
    settings.key.as_ref().ok_or("this instance has no key")?;
    let resolved = resolve(&settings, &Secrets::default()).await?;
    let users_by = settings.users_by;
    // One process: its own marks keep time tokens increasing.
    let marks = Arc::new(MemoryStore::new());
    let client = ZenTao::new(vec![(name.clone(), settings, resolved)], marks, None)?;
    let gid = match args.command {
        Command::Chats => {
            println!("{:<38} NAME", "gid");
            for (gid, group) in client.group_chats(&name).await? {
                println!("{:<38} {}", escape(&gid), escape(&group));
            }
            return Ok(());
        }
        Command::Users { gid } => gid,
    };
    let members = client.users(&name, gid.as_deref()).await?;
    if let Some(gid) = gid
        && members.is_empty()
    {
        return Err(format!(
            "ZenTao lists no members for group chat {}: it does not exist, was dismissed, or \
             everyone left. ZenTao would send a message for it to every active user, so \
             hookbridge refuses to send to it",
            escape(&gid)
        )
        .into());
    }
    // Accounts come only from the REST API, through the instance's directory login.
    let accounts: BTreeMap<String, String> = client
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
