//! A part's own commands (`hookbridge <part> …`): declared in the part's room, listed by the
//! registry ([`crate::registry::tools`]), mounted by the CLI next to its own. Only with the
//! `cli` feature: no function carries them.

use std::future::Future;
use std::pin::Pin;

pub type ToolError = Box<dyn std::error::Error + Send + Sync>;
pub type ToolResult = Result<(), ToolError>;

type Run = Box<dyn Fn(clap::ArgMatches) -> Pin<Box<dyn Future<Output = ToolResult>>>>;

/// One part's subcommand: its arguments and what runs them.
pub struct Tool {
    pub command: clap::Command,
    run: Run,
}

impl Tool {
    /// `hookbridge <name>`, described by `about`, taking the arguments `A` to `run`.
    pub fn new<A, F>(name: &'static str, about: &'static str, run: fn(A) -> F) -> Tool
    where
        A: clap::Args + clap::FromArgMatches + 'static,
        F: Future<Output = ToolResult> + 'static,
    {
        Tool {
            command: A::augment_args(clap::Command::new(name).about(about)),
            run: Box::new(move |matches| {
                Box::pin(async move { run(A::from_arg_matches(&matches)?).await })
            }),
        }
    }

    pub fn name(&self) -> &str {
        self.command.get_name()
    }

    /// Runs it with what clap matched for its subcommand.
    pub async fn run(&self, matches: clap::ArgMatches) -> ToolResult {
        (self.run)(matches).await
    }
}

/// The section at `keys` (`["connectors", "zentao"]`) of the config file at `file`, read as
/// its part reads it; `None` when the file has none. A part's tool reads its own sections, so
/// it needs nothing of the config's other parts.
pub fn section<T: serde::de::DeserializeOwned>(
    file: &std::path::Path,
    keys: &[&str],
) -> Result<Option<T>, ToolError> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut value: toml::Value =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    for key in keys {
        match value.get(key) {
            Some(v) => value = v.clone(),
            None => return Ok(None),
        }
    }
    T::deserialize(value)
        .map(Some)
        .map_err(|e| format!("{}: [{}]: {e}", file.display(), keys.join(".")).into())
}

/// Where a deployment is reached and whom its senders call as: what `hookbridge setup <part>`
/// prints its instructions from.
pub struct Deployment {
    /// The webhooks' base URL: the stack's `ApiUrl`, or `--url`.
    pub api: String,
    /// The stack's outputs by name; empty for `--url`.
    pub outputs: std::collections::BTreeMap<String, String>,
    pub egress: Egress,
    /// The config file the functions run, for commands the instructions name.
    pub config_file: std::path::PathBuf,
    /// Print secrets' values (read from where they are kept) instead of where they are kept.
    pub reveal: bool,
}

/// The address the senders call from, as far as it is known.
pub enum Egress {
    /// `--url`: `serve` calls from its host's address.
    Host,
    /// The stack's `EgressMode` is off: AWS's shared, changing addresses.
    Shared,
    /// `existing`: the operator's own NAT.
    TheirNat,
    /// The stack's own NAT's Elastic IP.
    Ip(String),
}

impl Deployment {
    /// The bases in the stack output `key` (space-separated), or `--url`'s.
    pub fn bases(&self, key: &str) -> Vec<String> {
        match self.outputs.get(key) {
            Some(v) => v.split_whitespace().map(str::to_owned).collect(),
            None if self.outputs.is_empty() => vec![self.api.clone()],
            None => vec![],
        }
    }

    /// A secret as printed: its value with `--reveal`, else where it is kept.
    pub async fn secret(
        &self,
        r: &crate::setup::SecretRef,
    ) -> Result<String, crate::setup::ConfigError> {
        use crate::setup::SecretRef;
        if self.reveal {
            return crate::setup::Secrets::default().resolve(r).await;
        }
        Ok(match r {
            SecretRef::Plain(v) => v.clone(),
            other => format!("<the value of {other:?}>"),
        })
    }

    /// What to add to `system`'s list of allowed callers, kept in `place`.
    pub fn allowlist(&self, system: &str, place: &str) -> String {
        let head = format!(
            "\n{system} accepts calls only from the addresses its app lists, in {place}.\n\n"
        );
        match &self.egress {
            Egress::Ip(ip) => format!("{head}  {ip}\n\n(IPv4: the list takes no IPv6.)\n"),
            Egress::Host => format!(
                "{head}  the public IPv4 address of the host running hookbridge serve (or of the \
                 NAT in front of it)\n"
            ),
            Egress::TheirNat => format!(
                "{head}  the public IPv4 address of the NAT of the subnets in EgressSubnetIds \
                 (EgressMode existing)\n"
            ),
            Egress::Shared => format!(
                "{head}The stack has no static egress (EgressMode off): its senders call from \
                 AWS's shared addresses, which change and cannot be listed. Deploy with \
                 EgressMode nat-instance or nat-gateway (the stack's own address, output \
                 EgressIp) or existing (your VPC's NAT), then run this again.\n"
            ),
        }
    }
}
