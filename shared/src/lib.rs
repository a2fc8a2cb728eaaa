//! hookbridge: webhooks from HAP into DingTalk work notifications.
//!
//! Every line of logic lives here; the Lambda functions and the `hookbridge` binary only wire
//! it up. Start at [`ingress`] (requests in) and [`delivery`] (calls out); `DESIGN.md` has the
//! map.

pub mod app;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod event;
pub mod ingress;
pub mod lambda;
pub mod local;
pub mod logging;
pub mod notice;
pub mod pacer;
pub mod registry;
pub mod routing;
pub mod setup;
pub mod sources;
pub mod store;
pub mod templates;
