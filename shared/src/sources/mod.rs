//! Webhook sources. Each is one file: authenticate, parse, normalize, and answer in the
//! source's own response format. They plug into [`crate::ingress`].

pub mod hap;
mod lenient;

/// The typed view of a parsed request that routing works from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    HapMessage(hap::HapMessage),
    HapFinish(hap::FinishTodo),
}
