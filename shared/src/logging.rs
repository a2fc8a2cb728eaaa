//! What reaches a log line. Values that come from requests (ids, paths, titles, the error
//! messages that quote them) are hostile until shown otherwise: in the text log of `serve` and
//! the CLI every field is escaped, so a value cannot start a forged line, hide in NUL bytes or
//! drive the terminal; ids are cut to a readable length with a hash that still tells them
//! apart. Lambda keeps its JSON log, whose encoding already escapes.

use std::fmt;
use std::io::IsTerminal;

use sha1::{Digest, Sha1};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Ids longer than this are cut in log lines.
pub const MAX_ID_CHARS: usize = 128;

/// An id as a log line shows it: itself, or when longer than [`MAX_ID_CHARS`] its first 100
/// characters, `…` and 8 hex digits of its SHA-1.
pub struct LogId<'a>(pub &'a str);

impl fmt::Display for LogId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.chars().count() <= MAX_ID_CHARS {
            return f.write_str(self.0);
        }
        let head: String = self.0.chars().take(100).collect();
        let digest = Sha1::digest(self.0.as_bytes());
        let hash = hex::encode(&digest[..4]);
        write!(f, "{head}…#{hash}")
    }
}

/// `text` with every character that could forge a line or drive a terminal written as an
/// escape: control characters (newlines, NUL, ESC…), line and paragraph separators, and
/// bidirectional overrides.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Where the Lambda runtime logs every invocation's raw event at TRACE: webhook requests with
/// their headers, paths and bodies, which carry the sources' secrets.
const RAW_EVENTS: &str = "lambda_runtime::layers::api_response";

/// `RUST_LOG`'s `target=level` directives (`hookbridge=debug,info`), at `level` where they say
/// nothing. A filter of targets rather than tracing's `EnvFilter`: that one's span and field
/// directives bring a regex engine (about 260 KB of each bootstrap) for what nobody here asks.
/// An unreadable `RUST_LOG` is ignored.
fn targets(level: LevelFilter) -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|d| d.parse::<Targets>().ok())
        .unwrap_or_default()
        .with_default(level)
}

/// The log of a Lambda function, as the runtime's default one (stdout; `AWS_LAMBDA_LOG_LEVEL`,
/// else `RUST_LOG`, else INFO; JSON when `AWS_LAMBDA_LOG_FORMAT` says so) but never the raw
/// events, whatever level is asked for.
pub fn init_lambda() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = targets(level).with_target(RAW_EVENTS, LevelFilter::DEBUG);
    // The builder's own filter (INFO unless told) would cap what `filter` lets through.
    let log = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_target(false)
        .without_time();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        log.json().finish().with(filter).init();
    } else {
        log.finish().with(filter).init();
    }
}

/// The text log of `serve` and the CLI, on stderr: fields escaped, colours only when stderr is
/// a terminal, `RUST_LOG` to filter (default `info`).
pub fn init_text() {
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let value = escape(&format!("{value:?}"));
        match field.name() {
            "message" => write!(w, "{value}"),
            name => write!(w, "{name}={value}"),
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .fmt_fields(fields)
        .finish()
        .with(targets(LevelFilter::INFO))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_that_forges_a_line_survives() {
        let hostile = "a\nINFO forged\r\0\u{1b}[31m\u{202e}b\u{2028}";
        let out = escape(hostile);
        assert_eq!(
            out,
            "a\\nINFO forged\\r\\u{0}\\u{1b}[31m\\u{202e}b\\u{2028}"
        );
        assert!(!out.chars().any(char::is_control));
        assert_eq!(escape("普通的 text"), "普通的 text");
    }

    #[test]
    fn long_ids_are_cut_with_a_hash_that_tells_them_apart() {
        let short = "x".repeat(128);
        assert_eq!(LogId(&short).to_string(), short);
        let a = format!("{}a", "x".repeat(300));
        let b = format!("{}b", "x".repeat(300));
        let (la, lb) = (LogId(&a).to_string(), LogId(&b).to_string());
        assert_eq!(la.chars().count(), 100 + 1 + 1 + 8);
        assert!(la.starts_with(&"x".repeat(100)) && la.contains('…'));
        assert_ne!(la, lb);
    }
}
