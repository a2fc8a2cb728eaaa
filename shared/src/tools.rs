//! A part's own commands (`hookbridge <part> …`): declared in the part's room, listed by the
//! registry ([`crate::registry::tools`]), mounted by the CLI next to its own. Only with the
//! `cli` feature: no function carries them.

use std::future::Future;
use std::pin::Pin;

pub type ToolResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

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

/// The config file a tool is given, parsed and checked.
pub fn load(
    path: &std::path::Path,
) -> Result<crate::config::Config, Box<dyn std::error::Error + Send + Sync>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(crate::config::Config::from_toml(&text)?)
}
