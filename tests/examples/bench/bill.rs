//! A small organisation's month: what one notification measured (a HAP to-do to one person,
//! sent as a DingTalk work notification and followed up, posted twice as HAP retries), times
//! 10,000 events, and every fixed cost of the stack as `template.yaml` declares it, at the
//! price list below.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::notifications::Measured;

/// us-east-1 list prices in USD, from the AWS pricing pages (aws.amazon.com/<service>/pricing):
/// DynamoDB on demand (after the 2024-11-01 reduction) and its storage and PITR; Lambda arm64;
/// API Gateway HTTP APIs (first 300 million); CloudWatch standard alarms, custom metrics, logs
/// and dashboards; Secrets Manager; an NLB and an ALB at their hourly minimum; a public IPv4
/// address (since 2024-02-01); a NAT gateway; an EC2 t4g.nano and its 8 GB gp3 volume (the
/// egress modes as `scripts/egress-cost` prices them). China's regions bill in CNY at other
/// rates: the same counts, priced by their pages.
pub struct Prices {
    pub write_unit: f64,
    pub read_unit: f64,
    pub storage_gb_month: f64,
    pub pitr_gb_month: f64,
    pub lambda_request: f64,
    pub lambda_gb_second: f64,
    pub http_api_request: f64,
    pub log_gb: f64,
    pub log_gb_month: f64,
    pub alarm_metric: f64,
    pub custom_series: f64,
    pub dashboard: f64,
    pub secret: f64,
    pub load_balancer_hour: f64,
    pub public_ipv4_hour: f64,
    pub nat_gateway_hour: f64,
    pub nat_gateway_gb: f64,
    pub t4g_nano_hour: f64,
    pub gp3_gb_month: f64,
}

pub const PRICES: Prices = Prices {
    write_unit: 0.625e-6,
    read_unit: 0.125e-6,
    storage_gb_month: 0.25,
    pitr_gb_month: 0.20,
    lambda_request: 0.20e-6,
    lambda_gb_second: 0.000_013_333_4,
    http_api_request: 1.00e-6,
    log_gb: 0.50,
    log_gb_month: 0.03,
    alarm_metric: 0.10,
    custom_series: 0.30,
    dashboard: 3.00,
    secret: 0.40,
    load_balancer_hour: 0.0225,
    public_ipv4_hour: 0.005,
    nat_gateway_hour: 0.045,
    nat_gateway_gb: 0.045,
    t4g_nano_hour: 0.0042,
    gp3_gb_month: 0.08,
};

const MEMORY_GB: f64 = 128.0 / 1024.0;
const EVENTS: f64 = 10_000.0;
const HOURS: f64 = 730.0;
/// The sweeper's schedule: once a minute.
const SWEEPS: f64 = 43_800.0;
/// What an eventually consistent read of up to 4 KB is billed, in read units (a query that
/// finds nothing included).
const HALF_A_READ: f64 = 0.5;

/// The metrics each alarm of the template reads, by the condition it is deployed under ("" for
/// always): a metric-math alarm is billed per metric it reads.
fn alarm_metrics(template: &str) -> BTreeMap<String, usize> {
    // Each resource: its `  Name:` line and the lines indented under it.
    let mut resources: Vec<Vec<&str>> = vec![];
    for line in template.lines() {
        let top = line.len() > 2 && line.starts_with("  ") && !line[2..].starts_with([' ', '#']);
        match resources.last_mut() {
            Some(r) if !top => r.push(line),
            _ => resources.push(vec![line]),
        }
    }
    let mut by = BTreeMap::new();
    for r in resources {
        if !r.iter().any(|l| l.trim() == "Type: AWS::CloudWatch::Alarm") {
            continue;
        }
        let condition = r
            .iter()
            .find_map(|l| l.strip_prefix("    Condition: "))
            .unwrap_or("")
            .to_owned();
        let metrics = r.iter().filter(|l| l.trim() == "MetricStat:").count();
        *by.entry(condition).or_default() += metrics.max(1);
    }
    by
}

/// One line of the bill: what, how much of it a month, and its dollars.
struct Line(String, String, f64);

/// The bill, from `essential` (the stack's default `Monitoring`) and `full` (the same case with
/// every series), each of them the default case: one person, follow-up on.
pub fn bill(essential: &Measured, full: Option<&Measured>, template: &str) -> String {
    let p = &PRICES;
    let m = essential;
    let per_event = |f: &str, x: &dyn Fn(&super::notifications::Work) -> f64| {
        m.by_function.get(f).map_or(0.0, x) / m.notifications as f64
    };
    let invocations = |f: &str| per_event(f, &|w| w.invocations as f64);
    // Billed duration: each invocation's time, at least a millisecond.
    let seconds = |f: &str| per_event(f, &|w| w.time.as_secs_f64());
    let logs = |f: &str| per_event(f, &|w| w.log_bytes as f64);
    let sweeper = m.by_function.get("retry-sweeper");
    let per_sweep = |x: &dyn Fn(&super::notifications::Work) -> f64| {
        sweeper.map_or(0.0, |w| x(w) / w.invocations.max(1) as f64)
    };
    let webhooks = invocations("hap-webhook");
    let senders = invocations("dingtalk-sender");
    let requests = (webhooks + senders) * EVENTS + SWEEPS;
    let gb_seconds = ((seconds("hap-webhook") + seconds("dingtalk-sender")) * EVENTS
        + per_sweep(&|w| w.time.as_secs_f64()) * SWEEPS)
        * MEMORY_GB;
    let log_gb = ((logs("hap-webhook") + logs("dingtalk-sender")) * EVENTS
        + per_sweep(&|w| w.log_bytes as f64) * SWEEPS)
        / 1e9;
    // The sweeper's own queries, once a minute whether or not anything is due: each finding
    // nothing is half a read unit. What it reads of the entries it finds is in the events'
    // units (measured with a sweep every 1.6 s, each entry is read more often than at one a
    // minute: an upper bound).
    let idle_sweep = per_sweep(&|w| w.consumed.calls.get("Query").copied().unwrap_or(0) as f64);
    let reads = m.read_units() * EVENTS + idle_sweep * HALF_A_READ * SWEEPS;
    let stored_gb = m.stored_bytes as f64 / m.notifications as f64 * EVENTS / 1e9;
    let alarms = alarm_metrics(template);
    let essential_alarms = alarms.get("").copied().unwrap_or(0);
    let full_alarms = alarms.get("FullMonitoring").copied().unwrap_or(0);
    let nat_alarms = alarms.get("EgressNatInstance").copied().unwrap_or(0);
    let series = |m: &Measured| m.series.len();
    let lines = [
        Line(
            "DynamoDB writes".into(),
            format!("{:.0} write units", m.write_units() * EVENTS),
            m.write_units() * EVENTS * p.write_unit,
        ),
        Line(
            "DynamoDB reads".into(),
            format!("{reads:.0} read units (the sweeper's queries included)"),
            reads * p.read_unit,
        ),
        Line(
            "DynamoDB storage and point-in-time recovery".into(),
            format!("{:.3} GB (a month of events kept)", stored_gb),
            stored_gb * (p.storage_gb_month + p.pitr_gb_month),
        ),
        Line(
            "Lambda requests".into(),
            format!(
                "{:.0} ({webhooks:.0} webhook and {senders:.0} sender invocations an event; the sweeper once a minute)",
                requests
            ),
            requests * p.lambda_request,
        ),
        Line(
            "Lambda duration".into(),
            format!("{gb_seconds:.0} GB-s at 128 MB"),
            gb_seconds * p.lambda_gb_second,
        ),
        Line(
            "API Gateway".into(),
            format!("{:.0} requests", webhooks * EVENTS),
            webhooks * EVENTS * p.http_api_request,
        ),
        Line(
            "CloudWatch Logs".into(),
            format!("{:.3} GB", log_gb),
            log_gb * (p.log_gb + p.log_gb_month),
        ),
        Line(
            "CloudWatch alarms (`Monitoring=essential`)".into(),
            format!("{essential_alarms} alarm metrics"),
            essential_alarms as f64 * p.alarm_metric,
        ),
        Line(
            "CloudWatch custom metrics".into(),
            format!(
                "{} series ({}; `Dead` only in the hours a delivery dies)",
                series(m),
                m.series.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            series(m) as f64 * p.custom_series,
        ),
        Line(
            "Secrets Manager".into(),
            "1 secret (`hookbridge/secrets`)".into(),
            p.secret,
        ),
    ];
    let total: f64 = lines.iter().map(|l| l.2).sum();
    let variable = lines[..7].iter().map(|l| l.2).sum::<f64>() / EVENTS * 1e6;
    // What the always-free tiers take off: Lambda's million requests and 400,000 GB-s,
    // CloudWatch's 10 alarm metrics, 10 custom metrics and 5 GB of logs, DynamoDB's 25 GB.
    let free = lines[3].2
        + lines[4].2
        + lines[6].2
        + lines[7].2.min(10.0 * p.alarm_metric)
        + lines[8].2.min(10.0 * p.custom_series)
        + lines[2].2.min(25.0 * p.storage_gb_month);
    let mut t = String::from("| a month of 10,000 events | how much | USD |\n|---|---|---|\n");
    for Line(what, much, usd) in &lines {
        let _ = writeln!(t, "| {what} | {much} | {usd:.2} |");
    }
    let _ = writeln!(t, "| **total** | | **{total:.2}** |");
    let _ = writeln!(
        t,
        "| the same on an account whose always-free tiers are otherwise unused | | {:.2} |",
        total - free
    );
    let full_series = full.map_or(0, series);
    let options = [
        (
            "`Monitoring=full`".to_owned(),
            format!(
                "{full_alarms} more alarm metrics, {} series instead of {} (measured), the dashboard (USD 3 past an account's first three)",
                full_series,
                series(m)
            ),
            full_alarms as f64 * p.alarm_metric
                + (full_series.saturating_sub(series(m))) as f64 * p.custom_series
                + p.dashboard,
        ),
        (
            "the 浙政钉 front (`GovDingFrontVpcId`)".to_owned(),
            "an NLB and an ALB at their hourly minimum, 2 public IPv4 addresses".to_owned(),
            HOURS * (2.0 * p.load_balancer_hour + 2.0 * p.public_ipv4_hour),
        ),
        (
            "`EgressMode=nat-gateway`".to_owned(),
            "a NAT gateway and its public IPv4 address, 1 GB through it".to_owned(),
            HOURS * (p.nat_gateway_hour + p.public_ipv4_hour) + p.nat_gateway_gb,
        ),
        (
            "`EgressMode=nat-instance`".to_owned(),
            format!("a t4g.nano, its 8 GB volume and public IPv4 address, its {nat_alarms} alarms"),
            HOURS * (p.t4g_nano_hour + p.public_ipv4_hour)
                + 8.0 * p.gp3_gb_month
                + nat_alarms as f64 * p.alarm_metric,
        ),
    ];
    let _ = writeln!(
        t,
        "\nVariable costs come to USD {variable:.2} per million events. Optional, each a month on top:\n\n\
         | option | what | USD |\n|---|---|---|"
    );
    for (what, much, usd) in options {
        let _ = writeln!(t, "| {what} | {much} | {usd:.2} |");
    }
    t
}
