//! hookbridge: webhooks from HAP, DMS and 浙政钉 into DingTalk, 浙政钉, ZenTao and DingTalk robot
//! notifications.
//!
//! Every line of logic lives here; the Lambda functions and the `hookbridge` binary only wire
//! it up. Start at [`registry`] (every source and connector), [`ingress`] (requests in) and
//! [`delivery`] (calls out); docs/how-it-works.md has the map.

pub mod app;
pub mod config;
pub mod connectors;
pub mod console;
pub mod delivery;
pub mod event;
pub mod http;
pub mod ingress;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod notice;
pub mod operator;
pub mod pacer;
pub mod preflight;
pub mod registry;
pub mod revoke;
pub mod routing;
pub mod setup;
pub mod sources;
pub mod store;
pub mod templates;
#[cfg(feature = "cli")]
pub mod tools;
