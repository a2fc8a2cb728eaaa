//! The notice: what a source's event says, in terms every connector can render. Sources build
//! it from their payloads (`sources/<s>.rs`); connectors turn it into their requests
//! (`connectors/<c>/render.rs`); neither knows the other's fields.

use chrono::TimeZone;

use crate::event::{Millis, beijing};

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The source as readers know it (`HAP`, `DMS`).
    pub from: &'static str,
    /// The app or module the event is about (HAP's app name), if any.
    pub app: Option<String>,
    pub title: String,
    /// The body, rendered by the route's template (Markdown-escaped when the connector shows
    /// Markdown).
    pub text: String,
    /// Stable per event, unique between events (see [`tag`]).
    pub tag: String,
    /// When it happened, as readers should see it.
    pub time: Millis,
    pub link: Option<String>,
    /// `(name, link)` of images to show.
    pub images: Vec<(String, String)>,
    /// Further lines: attachments, task, submitter.
    pub details: Vec<String>,
    /// How many files come with it.
    pub attachments: usize,
}

/// Short, stable tag from the event id: the same event renders the same content (a retry is a
/// harmless duplicate), different events differ (DingTalk drops same-content-same-day repeats).
pub fn tag(id: &str) -> String {
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    format!("#{short}")
}

/// Beijing time, as the people reading the notification see it.
pub fn local_time(at: Millis) -> String {
    beijing()
        .timestamp_millis_opt(at)
        .single()
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M").to_string())
}
