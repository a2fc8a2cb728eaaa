//! The registry: every source and connector hookbridge has, one line each. A part's line gives
//! it its config section (`[sources.<name>]`, `[connectors.<name>]`), its built-in template and
//! its place in `App::build`; the config learns the valid names from here.
//!
//! Each part's running half (a source's parser, a connector's client) is built only with its
//! cargo feature (`source-hap`, `connector-dingtalk`…), so a Lambda function links just its
//! own part. Every part's config section and renderer are always there: all functions read
//! the same config file, and a webhook renders for every connector.

use std::sync::Arc;

use serde::Deserialize;

use crate::connectors::dingtalk::DingTalk;
use crate::connectors::dingtalk_robot::DingTalkRobot;
use crate::connectors::feishu::Feishu;
use crate::connectors::feishu_robot::FeishuRobot;
use crate::connectors::govding::GovDing;
use crate::connectors::wecom::WeCom;
use crate::connectors::wecom_robot::WeComRobot;
use crate::connectors::zentao::ZenTao;
use crate::connectors::{Connector, ConnectorPart, Ports, Render};
use crate::setup::{ConfigError, Secrets};
use crate::sources::alertmanager::AlertmanagerSource;
use crate::sources::dms::DmsSource;
use crate::sources::generic::GenericSource;
use crate::sources::govding::GovDingSource;
use crate::sources::hap::HapSource;
use crate::sources::{Source, SourcePart};
use crate::templates::Builtin;

self::registry! {
    sources {
        hap: HapSource = "source-hap",
        dms: DmsSource = "source-dms",
        govding: GovDingSource = "source-govding",
        alertmanager: AlertmanagerSource = "source-alertmanager",
        generic: GenericSource = "source-generic",
    }
    connectors {
        dingtalk: DingTalk = "connector-dingtalk",
        dingtalk_robot: DingTalkRobot = "connector-dingtalk-robot",
        zentao: ZenTao = "connector-zentao",
        govding: GovDing = "connector-govding",
        wecom: WeCom = "connector-wecom",
        wecom_robot: WeComRobot = "connector-wecom-robot",
        feishu: Feishu = "connector-feishu",
        feishu_robot: FeishuRobot = "connector-feishu-robot",
    }
}

/// Expands the lists above into the config sections and the code that builds each part.
macro_rules! registry {
    (sources { $($s:ident: $S:ty = $sf:literal),* $(,)? }
     connectors { $($c:ident: $C:ty = $cf:literal),* $(,)? }) => {
        /// `[sources.<name>]`: one optional section per registered source.
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Sources {
            $(pub $s: Option<<$S as SourcePart>::Config>,)*
        }

        /// `[connectors.<name>]`: one optional section per registered connector.
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Connectors {
            $(pub $c: Option<<$C as ConnectorPart>::Config>,)*
        }

        /// Every connector's route options, for the config's schema: a route takes the shared
        /// keys and its connector's, each marked with the connector that reads it.
        #[cfg(feature = "schema")]
        pub struct RouteOptions;

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for RouteOptions {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                "RouteOptions".into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let (mut properties, mut only) = (serde_json::Map::new(), vec![]);
                $(
                    let options =
                        <<$C as ConnectorPart>::RouteOptions as schemars::JsonSchema>::json_schema(generator);
                    let mut keys = vec![];
                    for (key, mut schema) in options
                        .get("properties")
                        .and_then(serde_json::Value::as_object)
                        .cloned()
                        .unwrap_or_default()
                    {
                        schema["x-read-by"] = concat!("connector ", stringify!($c)).into();
                        keys.push(serde_json::json!({ "required": [key.clone()] }));
                        properties.insert(key, schema);
                    }
                    // Its keys only on its routes, as the loader has it.
                    if !keys.is_empty() {
                        only.push(serde_json::json!({
                            "if": { "not": { "properties": { "connector": { "const": stringify!($c) } } } },
                            "then": { "not": { "anyOf": keys } },
                        }));
                    }
                )*
                schemars::json_schema!({ "type": "object", "properties": properties, "allOf": only })
            }
        }

        /// Every connector, and whether its system whitelists callers' addresses
        /// ([`ConnectorPart::CALLER_ALLOWLIST`]).
        pub const CONNECTORS: &[(&str, bool)] =
            &[$((stringify!($c), <$C as ConnectorPart>::CALLER_ALLOWLIST.is_some())),*];

        /// Every part's own command (`hookbridge <part> …`), for the CLI to mount.
        #[cfg(feature = "cli")]
        pub fn tools() -> Vec<crate::tools::Tool> {
            let mut out = vec![];
            $(out.extend(<$S as SourcePart>::tool());)*
            $(out.extend(<$C as ConnectorPart>::tool());)*
            out
        }

        /// Every part's name, once (a system's source and connector share one).
        pub fn names() -> Vec<&'static str> {
            let mut names = vec![$(stringify!($s)),*];
            $(if !names.contains(&stringify!($c)) { names.push(stringify!($c)); })*
            names
        }

        /// What to enter in the system `name` for the deployment `at` (`hookbridge setup`):
        /// its source's instructions, then its connector's.
        #[cfg(feature = "cli")]
        pub async fn setup(
            name: &str,
            sources: &Sources,
            connectors: &Connectors,
            at: &crate::tools::Deployment,
        ) -> Result<String, crate::tools::ToolError> {
            let mut out = String::new();
            $(if name == stringify!($s) {
                let c = sources.$s.as_ref().ok_or(concat!(
                    "the config has no [sources.", stringify!($s), "]"
                ))?;
                out += &<$S as SourcePart>::setup(c, at).await?;
            })*
            $(if name == stringify!($c) {
                out += &<$C as ConnectorPart>::setup(connectors.$c.as_ref(), at);
            })*
            Ok(out)
        }

        /// Every source's built-in template, by source name.
        pub const TEMPLATES: &[(&str, Builtin)] =
            &[$((stringify!($s), <$S as SourcePart>::TEMPLATE)),*];

        /// The English built-ins (`<source>.en`) of the sources that have one.
        const ENGLISH: &[(&str, Option<Builtin>)] =
            &[$((concat!(stringify!($s), ".en"), <$S as SourcePart>::TEMPLATE_EN)),*];

        /// Every built-in template: the sources' own and their English ones.
        pub fn builtins() -> Vec<(&'static str, Builtin)> {
            TEMPLATES
                .iter()
                .copied()
                .chain(ENGLISH.iter().filter_map(|&(name, b)| Some((name, b?))))
                .collect()
        }

        impl Sources {
            /// The sources that have a section.
            pub fn configured(&self) -> Vec<&'static str> {
                let mut names = vec![];
                $(if self.$s.is_some() { names.push(stringify!($s)); })*
                names
            }

            /// Checks every section, resolving no secret.
            pub fn check(&self) -> Result<(), ConfigError> {
                $(if let Some(c) = &self.$s { <$S as SourcePart>::check(c)?; })*
                Ok(())
            }

            /// The configured sources that `wanted` names, with their secrets resolved.
            pub async fn build(
                &self,
                secrets: &Secrets,
                wanted: impl Fn(&str) -> bool,
            ) -> Result<Vec<Arc<dyn Source>>, ConfigError> {
                let mut out = vec![];
                $(if let (Some(c), true) = (&self.$s, wanted(stringify!($s))) {
                    out.push(built!($sf, stringify!($s), (c, secrets), <$S as SourcePart>::build(c, secrets)));
                })*
                Ok(out)
            }
        }

        impl Connectors {
            /// The connectors that have a section.
            pub fn configured(&self) -> Vec<&'static str> {
                let mut names = vec![];
                $(if self.$c.is_some() { names.push(stringify!($c)); })*
                names
            }

            /// Checks every section, resolving no secret.
            pub fn check(&self) -> Result<(), ConfigError> {
                $(if let Some(c) = &self.$c { <$C as ConnectorPart>::check(c)?; })*
                Ok(())
            }

            /// The windows of the configured connectors that have one
            /// ([`ConnectorPart::WINDOW`]): `(connector, seconds, why)`.
            pub fn windows(&self) -> Vec<(&'static str, u32, &'static str)> {
                let mut out = vec![];
                $(if let (Some(_), Some((secs, why))) = (&self.$c, <$C as ConnectorPart>::WINDOW) {
                    out.push((stringify!($c), secs, why));
                })*
                out
            }

            /// The ingress half of every configured connector (no secrets needed).
            pub fn renderers(&self) -> Vec<Arc<dyn Render>> {
                let mut out = vec![];
                $(if let Some(c) = &self.$c { out.push(<$C as ConnectorPart>::render(c)); })*
                out
            }

            /// The configured connectors that `wanted` names, with their secrets resolved.
            pub async fn build(
                &self,
                secrets: &Secrets,
                ports: &Ports,
                wanted: impl Fn(&str) -> bool,
            ) -> Result<Vec<Arc<dyn Connector>>, ConfigError> {
                let mut out = vec![];
                $(if let (Some(c), true) = (&self.$c, wanted(stringify!($c))) {
                    out.push(built!(
                        $cf, stringify!($c), (c, secrets, ports),
                        <$C as ConnectorPart>::build(c, secrets, ports)
                    ));
                })*
                Ok(out)
            }
        }
    };
}
use registry;

/// The part `build` makes, if this binary has its `feature`; else a config error that says so.
macro_rules! built {
    ($feature:literal, $name:expr, $inputs:expr, $build:expr) => {{
        #[cfg(feature = $feature)]
        let part = $build.await;
        #[cfg(not(feature = $feature))]
        let part = {
            let _ = $inputs;
            Err(ConfigError::Invalid(format!(
                "{} is not built into this program (cargo feature {})",
                $name, $feature
            )))
        };
        part?
    }};
}
use built;
