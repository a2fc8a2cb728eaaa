//! Outbound connectors. Each is one file: typed API client, error classes, token handling.
//! They plug into [`crate::delivery`].

pub mod dingtalk;
pub mod zentao;
