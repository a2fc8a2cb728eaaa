//! `hookbridge setup hap|dms|govding|dingtalk|zentao`: what to paste into each system's
//! console, from the stack's outputs (`--stack`) or a base URL (`--url`) and the config the
//! functions run: the webhook URLs and secrets for the sources, and the address the senders
//! call from for the systems that whitelist callers.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use hookbridge::config::{Config, SecretRef, Secrets};
use hookbridge::sources::{dms, govding};
use serde_json::json;

use crate::Result;

#[derive(Clone, Copy, ValueEnum)]
pub enum Source {
    /// HAP's appextensions.json (WebhookUrl, FinishTodoWebhookUrl, WebhookHeaders).
    Hap,
    /// The DMS notification settings (Webhook URL, 签名方式, 签名密钥).
    Dms,
    /// The 浙政钉 callback URL and the command that registers it, and the address to add to
    /// the app's IP whitelist.
    Govding,
    /// The address to add to the DingTalk app's 服务器出口IP (and a robot's IP security mode).
    Dingtalk,
    /// The address to add to the ZenTao app's IP list.
    Zentao,
}

#[derive(Args)]
pub struct Setup {
    /// The system to set up.
    #[arg(value_enum)]
    source: Source,
    /// The deployed stack: its outputs give the URLs (AWS credentials and region from the
    /// environment or ~/.aws, as for the AWS CLI).
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    stack: Option<String>,
    /// The base URL instead: the stack's ApiUrl output, or where `hookbridge serve` is
    /// reached from the source (for 浙政钉: http://<IP address>[:<port>]).
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    config: StackConfig,
    /// Print the secrets' values (read from Secrets Manager or the environment) instead of
    /// where each is kept.
    #[arg(long)]
    reveal: bool,
}

/// The config the deployed functions run (`setup`, `check`).
#[derive(Args)]
pub struct StackConfig {
    /// The config file the functions run.
    #[arg(
        long,
        env = "HOOKBRIDGE_CONFIG_FILE",
        default_value = "config/stack/hookbridge.toml"
    )]
    pub config: PathBuf,
}

/// Where the webhooks are: the API's base, and the static-IP bases of the 浙政钉 front; and
/// where the senders call from.
pub(crate) struct Bases {
    pub(crate) api: String,
    pub(crate) govding: Vec<String>,
    egress: Egress,
}

/// The bases of a deployed stack (`--stack`) or of a URL (`--url`).
pub(crate) async fn bases(stack: Option<&str>, url: Option<&str>) -> Result<Bases> {
    match (stack, url) {
        (Some(stack), _) => stack_bases(stack).await,
        (None, Some(url)) => Ok(Bases {
            api: url.trim_end_matches('/').to_owned(),
            govding: vec![url.trim_end_matches('/').to_owned()],
            egress: Egress::Host,
        }),
        (None, None) => Err("give --stack or --url".into()),
    }
}

/// The address the senders call from, as far as it is known.
enum Egress {
    /// `--url`: `serve` calls from its host's address.
    Host,
    /// The stack's `EgressMode` is off: AWS's shared, changing addresses.
    Shared,
    /// `existing`: the operator's own NAT.
    TheirNat,
    /// The stack's own NAT's Elastic IP.
    Ip(String),
}

/// The stack outputs the printers read (template.yaml `Outputs`).
pub const API_URL: &str = "ApiUrl";
pub const GOVDING_CALLBACK_BASE: &str = "GovDingCallbackBase";
pub const EGRESS_MODE: &str = "EgressMode";
pub const EGRESS_IP: &str = "EgressIp";

pub async fn run(args: Setup) -> Result<()> {
    let config = crate::load(Some(&args.config.config))?;
    let bases = bases(args.stack.as_deref(), args.url.as_deref()).await?;
    let secret = Secret {
        reveal: args.reveal,
        secrets: Secrets::default(),
    };
    let out = match args.source {
        Source::Hap => hap(&config, &bases, &secret).await?,
        Source::Dms => dms(&config, &bases, &secret).await?,
        Source::Govding => {
            govding(&config, &bases, &secret, &args.config.config).await?
                + &allowlist("浙政钉", GOVDING_WHERE, &bases.egress)
        }
        Source::Dingtalk => {
            let mut out = allowlist("DingTalk", DINGTALK_WHERE, &bases.egress);
            if config.connectors.dingtalk_robot.is_some() {
                out.push_str(ROBOT_WHERE);
            }
            out
        }
        Source::Zentao => allowlist("ZenTao", ZENTAO_WHERE, &bases.egress),
    };
    print!("{out}");
    Ok(())
}

/// A secret as printed: its value with --reveal, else where it is kept.
struct Secret {
    reveal: bool,
    secrets: Secrets,
}

impl Secret {
    async fn show(&self, r: &SecretRef) -> Result<String> {
        if self.reveal {
            return Ok(self.secrets.resolve(r).await?);
        }
        Ok(match r {
            SecretRef::Plain(v) => v.clone(),
            other => format!("<the value of {other:?}>"),
        })
    }
}

/// The outputs of `stack`, by name.
pub(crate) async fn stack_outputs(stack: &str) -> Result<Vec<(String, String)>> {
    let client = aws_sdk_cloudformation::Client::new(hookbridge::http::aws_config().await);
    let described = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            format!(
                "stack {stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(e)
            )
        })?;
    let outputs: Vec<(String, String)> = described
        .stacks()
        .first()
        .ok_or_else(|| format!("no stack {stack}"))?
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    Ok(outputs)
}

async fn stack_bases(stack: &str) -> Result<Bases> {
    let outputs = stack_outputs(stack).await?;
    let output = |key: &str| {
        outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    Ok(Bases {
        api: output(API_URL).ok_or_else(|| {
            format!("stack {stack} has no {API_URL} output: is it a hookbridge stack?")
        })?,
        govding: output(GOVDING_CALLBACK_BASE)
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        egress: match (output(EGRESS_MODE).as_deref(), output(EGRESS_IP)) {
            (_, Some(ip)) => Egress::Ip(ip),
            (Some("existing"), None) => Egress::TheirNat,
            _ => Egress::Shared,
        },
    })
}

const DINGTALK_WHERE: &str = "DingTalk's developer console (open-dev.dingtalk.com): 应用开发 → \
     企业内部应用 → the app → 开发管理 → 服务器出口IP. Without it every call is refused with errcode 60020";
const ROBOT_WHERE: &str =
    "\nA group robot whose 安全设置 is IP地址（段） takes the same address there.\n";
const GOVDING_WHERE: &str = "the 浙政钉 open platform: the app → IP 白名单. Without it every \
     call is refused (访问IP不在白名单中)";
const ZENTAO_WHERE: &str = "ZenTao: 后台 → 二次开发 → 应用 → the app → IP. Without it every call \
     is refused (errcode 403 IP_DENIED); or leave the app's IP list unlimited";

/// What to add to a system's list of allowed callers, and where.
fn allowlist(system: &str, place: &str, egress: &Egress) -> String {
    let head =
        format!("\n{system} accepts calls only from the addresses its app lists, in {place}.\n\n");
    match egress {
        Egress::Ip(ip) => format!("{head}  {ip}\n\n(IPv4: the list takes no IPv6.)\n"),
        Egress::Host => format!(
            "{head}  the public IPv4 address of the host running hookbridge serve (or of the NAT \
             in front of it)\n"
        ),
        Egress::TheirNat => format!(
            "{head}  the public IPv4 address of the NAT of the subnets in EgressSubnetIds \
             (EgressMode existing)\n"
        ),
        Egress::Shared => format!(
            "{head}The stack has no static egress (EgressMode off): its senders call from AWS's \
             shared addresses, which change and cannot be listed. Deploy with EgressMode \
             nat-instance or nat-gateway (the stack's own address, output EgressIp) or existing \
             (your VPC's NAT), then run this again.\n"
        ),
    }
}

async fn hap(config: &Config, bases: &Bases, secret: &Secret) -> Result<String> {
    let hap = config
        .sources
        .hap
        .as_ref()
        .ok_or("the config has no [sources.hap]")?;
    let token = hap.tokens.first().ok_or("[sources.hap] has no tokens")?;
    let extensions = json!({
        "WebhookUrl": format!("{}/hap/message", bases.api),
        "FinishTodoWebhookUrl": format!("{}/hap/todo", bases.api),
        "WebhookHeaders": { hap.header.clone(): secret.show(token).await? },
    });
    Ok(format!(
        "Write this to /data/hap/script/volume/integrate/appextensions.json on the HAP host\n\
         (mounted at /usr/local/MDPrivateDeployment/integrate/appextensions.json), then\n\
         restart HAP's microservices:\n\n{}\n",
        serde_json::to_string_pretty(&extensions)?
    ))
}

async fn dms(config: &Config, bases: &Bases, secret: &Secret) -> Result<String> {
    let dms = config
        .sources
        .dms
        .as_ref()
        .ok_or("the config has no [sources.dms]")?;
    let url = format!("{}{}", bases.api, dms::PATH);
    let mut out = format!(
        "In DMS: avatar → 通知 → 修改通知方式 (an administrator can do it for others under user\n\
         management), tick Webhook, and enter\n\n  Webhook   {url}\n"
    );
    match &dms.signature_key {
        Some(key) => {
            out.push_str(&format!(
                "  签名方式  HMAC_SHA1\n  签名密钥  {}\n",
                secret.show(key).await?
            ));
            if dms.webhook_url.as_deref() != Some(url.as_str()) {
                out.push_str(&format!(
                    "\nSet webhook_url = \"{url}\" in [sources.dms] and deploy again: the \
                     signature may cover the URL exactly as entered in DMS.\n"
                ));
            }
        }
        None => out.push_str(
            "  签名方式  NONE (set signature_key in [sources.dms] to require HMAC_SHA1)\n",
        ),
    }
    out.push_str("\nThen press 测试: `hookbridge deliveries list` shows the test event.\n");
    Ok(out)
}

async fn govding(
    config: &Config,
    bases: &Bases,
    secret: &Secret,
    file: &std::path::Path,
) -> Result<String> {
    let source = config
        .sources
        .govding
        .as_ref()
        .ok_or("the config has no [sources.govding]")?;
    let token = secret.show(&source.path_token).await?;
    let Some(base) = bases.govding.first() else {
        return Err(
            "the stack has no static-IP front (GovDingCallbackBase): the 浙政钉 gateway \
                    takes IP-address callback URLs only; deploy with GovDingFrontVpcId and two \
                    public subnets, or give --url http://<IP address>"
                .into(),
        );
    };
    let mut out = String::from("The 浙政钉 gateway calls back at\n\n");
    for b in &bases.govding {
        out.push_str(&format!("  {}\n", govding::callback_url(b, &token)));
    }
    out.push_str(&format!(
        "\nRegister it for every eventTag hookbridge reads (the gateway checks that it answers):\n\n  \
         hookbridge govding --config {} register --callback-base {base}\n",
        file.display()
    ));
    Ok(out)
}
