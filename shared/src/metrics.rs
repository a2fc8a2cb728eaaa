//! What hookbridge did, counted: requests accepted, duplicated and rejected per source,
//! deliveries delivered, retried, undelivered and dead per connector, send latency per
//! connector, API calls per app; and what a part defines in its own folder ([`Metric::percent`]:
//! DingTalk's quota share).
//!
//! One registry per process. In Lambda, [`flush`] after each invocation writes what it counted
//! as CloudWatch Embedded Metric Format: JSON lines on stdout that CloudWatch Logs turns into
//! metrics in the namespace `hookbridge`, with no API call and no agent. `hookbridge serve`
//! shows the running totals on `/metrics` in Prometheus text format ([`prometheus`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{LazyLock, Mutex};

use serde_json::{Value, json};

use crate::event::now_ms;

pub const NAMESPACE: &str = "hookbridge";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Summed per invocation in EMF; `_total` in Prometheus.
    Counter,
    /// Every value in EMF (CloudWatch computes percentiles); `_sum` and `_count` in Prometheus.
    Milliseconds,
    /// The last value.
    Percent,
}

/// A metric: its CloudWatch name, its Prometheus name and what it counts.
#[derive(Debug)]
pub struct Metric {
    emf: &'static str,
    prom: &'static str,
    kind: Kind,
    help: &'static str,
    /// Also published without dimensions, for an alarm on the whole deployment.
    total: bool,
}

macro_rules! metrics {
    ($($id:ident: $emf:literal, $prom:literal, $kind:ident, $total:literal, $help:literal;)*) => {
        $(pub const $id: Metric = Metric {
            emf: $emf, prom: $prom, kind: Kind::$kind, total: $total, help: $help,
        };)*
    };
}

metrics! {
    ACCEPTED: "Accepted", "hookbridge_accepted", Counter, false,
        "Webhook requests stored (by source).";
    DUPLICATES: "Duplicates", "hookbridge_duplicates", Counter, false,
        "Webhook requests that repeated a stored event and wrote nothing (by source).";
    REJECTED: "Rejected", "hookbridge_rejected", Counter, false,
        "Webhook requests refused (by source and reason).";
    DELIVERED: "Delivered", "hookbridge_delivered", Counter, false,
        "Deliveries the receiving system accepted (by connector).";
    RETRIED: "Retried", "hookbridge_retried", Counter, false,
        "Delivery attempts that failed and will be retried (by connector).";
    UNDELIVERED: "Undelivered", "hookbridge_undelivered", Counter, false,
        "Deliveries accepted but reported as reaching nobody (by connector).";
    DEAD: "Dead", "hookbridge_dead", Counter, true,
        "Deliveries given up for good (by connector).";
    SEND_LATENCY: "SendLatency", "hookbridge_send_latency_milliseconds", Milliseconds, false,
        "Time a connector's call took (by connector).";
    API_CALLS: "ApiCalls", "hookbridge_api_calls", Counter, false,
        "Calls counted against an app's API quota (by app).";
}

impl Metric {
    /// A part's own gauge, defined in its folder: the last value, a percentage. `total`: also
    /// published without dimensions, for an alarm on the whole deployment.
    pub const fn percent(
        emf: &'static str,
        prom: &'static str,
        total: bool,
        help: &'static str,
    ) -> Metric {
        Metric {
            emf,
            prom,
            kind: Kind::Percent,
            help,
            total,
        }
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Series {
    sum: f64,
    count: u64,
    last: f64,
    /// Values since the last [`flush`] (Lambda only).
    pending: Vec<f64>,
}

#[derive(Default)]
struct Registry {
    series: BTreeMap<(&'static str, Labels), (&'static Metric, Series)>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// Records `value` of `metric` with its `labels` (dimension name, value).
pub fn record(metric: &'static Metric, labels: &[(&'static str, &str)], value: f64) {
    let labels: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    // A poisoned lock only means a panic elsewhere mid-update: the numbers are still usable.
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let (_, s) = registry
        .series
        .entry((metric.emf, labels))
        .or_insert_with(|| (metric, Series::default()));
    s.sum += value;
    s.count += 1;
    s.last = value;
    if in_lambda() {
        s.pending.push(value);
    }
}

/// Counts one of `metric`.
pub fn count(metric: &'static Metric, labels: &[(&'static str, &str)]) {
    record(metric, labels, 1.0);
}

/// Whether Lambda publishes every series (`HOOKBRIDGE_METRICS=full`, the stack's `Monitoring`)
/// or only what an alarm watches (`essential`, the default): CloudWatch bills each series a
/// month, about a dollar for four, so a small deployment keeps one or two.
fn full() -> bool {
    std::env::var("HOOKBRIDGE_METRICS").is_ok_and(|m| m == "full")
}

/// The EMF lines for what was recorded since the last call: one directive per metric and
/// labels, as few lines as hold them. Not `full`: only the metrics with a deployment-wide
/// total (what the alarms watch), as that total alone.
fn take_emf(now: i64, full: bool) -> Vec<Value> {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let mut lines = vec![];
    let none = Labels::new();
    for ((_, labels), (metric, s)) in registry.series.iter_mut() {
        if s.pending.is_empty() {
            continue;
        }
        let values = std::mem::take(&mut s.pending);
        if !full && !metric.total {
            continue;
        }
        let labels = if full { labels } else { &none };
        let value = match metric.kind {
            Kind::Counter => json!(values.iter().sum::<f64>()),
            // EMF takes up to 100 values a line.
            Kind::Milliseconds => json!(values.iter().rev().take(100).collect::<Vec<_>>()),
            Kind::Percent => json!(values.last()),
        };
        let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        let mut dimensions = vec![json!(keys)];
        if metric.total && !keys.is_empty() {
            dimensions.push(json!([]));
        }
        let unit = match metric.kind {
            Kind::Counter => "Count",
            Kind::Milliseconds => "Milliseconds",
            Kind::Percent => "Percent",
        };
        let directive = json!({
            "Namespace": NAMESPACE,
            "Dimensions": dimensions,
            "Metrics": [{ "Name": metric.emf, "Unit": unit }],
        });
        // As few lines as they fit in (log bytes are billed): a line takes another series when
        // it names each of its dimensions with the same value, or not at all.
        let fits = |line: &Value| {
            line.get(metric.emf).is_none()
                && labels
                    .iter()
                    .all(|(k, v)| line.get(*k).is_none_or(|x| *x == v.as_str()))
        };
        let line = match lines.iter_mut().find(|l| fits(l)) {
            Some(line) => line,
            None => {
                lines.push(json!({ "_aws": { "Timestamp": now, "CloudWatchMetrics": [] } }));
                lines.last_mut().expect("just pushed")
            }
        };
        if let Some(directives) = line["_aws"]["CloudWatchMetrics"].as_array_mut() {
            directives.push(directive);
        }
        line[metric.emf] = value;
        for (k, v) in labels {
            line[*k] = json!(v);
        }
    }
    lines
}

/// In Lambda: writes what this invocation recorded to stdout (the function's log) as EMF.
pub fn flush() {
    if !in_lambda() {
        return;
    }
    let mut out = std::io::stdout().lock();
    for line in take_emf(now_ms(), full()) {
        // A metric is never worth failing an invocation for.
        let _ = writeln!(out, "{line}");
    }
}

/// The sum so far of each series of `metric` in this process, with its labels joined by ` · `
/// (the console's view of what `serve` refused and repeated).
pub fn sums(metric: &'static Metric) -> Vec<(String, f64)> {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    registry
        .series
        .iter()
        .filter(|((name, _), _)| *name == metric.emf)
        .map(|((_, labels), (_, s))| {
            let labels: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
            (labels.join(" · "), s.sum)
        })
        .collect()
}

/// Every series so far in Prometheus text format (version 0.0.4).
pub fn prometheus() -> String {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    let mut described = None;
    for ((name, labels), (metric, s)) in &registry.series {
        if described != Some(*name) {
            described = Some(*name);
            let kind = match metric.kind {
                Kind::Counter => "counter",
                Kind::Milliseconds => "summary",
                Kind::Percent => "gauge",
            };
            let suffix = if metric.kind == Kind::Counter {
                "_total"
            } else {
                ""
            };
            let _ = writeln!(out, "# HELP {}{suffix} {}", metric.prom, metric.help);
            let _ = writeln!(out, "# TYPE {}{suffix} {kind}", metric.prom);
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{}=\"{}\"", k.to_lowercase(), escape(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        match metric.kind {
            Kind::Counter => {
                let _ = writeln!(out, "{}_total{labels} {}", metric.prom, s.sum);
            }
            Kind::Milliseconds => {
                let _ = writeln!(out, "{}_sum{labels} {}", metric.prom, s.sum);
                let _ = writeln!(out, "{}_count{labels} {}", metric.prom, s.count);
            }
            Kind::Percent => {
                let _ = writeln!(out, "{}{labels} {}", metric.prom, s.last);
            }
        }
    }
    out
}

/// A label value as Prometheus quotes it: a source's or app's name cannot break the line.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests that replace the process's registry, one at a time.
    static GLOBAL: Mutex<()> = Mutex::new(());

    #[test]
    fn prometheus_labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn an_emf_line_has_its_dimensions_and_the_total_when_asked() {
        let _one = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut registry = Registry::default();
        let s = Series {
            pending: vec![1.0, 1.0],
            ..Series::default()
        };
        registry
            .series
            .insert((DEAD.emf, vec![("Connector", "zentao".into())]), (&DEAD, s));
        *REGISTRY.lock().unwrap() = registry;
        let lines = take_emf(5, true);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["Dead"], 2.0);
        assert_eq!(l["Connector"], "zentao");
        let m = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "hookbridge");
        assert_eq!(m["Dimensions"], json!([["Connector"], []]));
        assert_eq!(m["Metrics"][0], json!({"Name": "Dead", "Unit": "Count"}));
        assert_eq!(l["_aws"]["Timestamp"], 5);
        assert!(
            take_emf(6, true).is_empty(),
            "a flushed value is written once"
        );
    }

    #[test]
    fn series_share_a_line_unless_a_dimension_differs() {
        let _one = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        let pending = |v: f64| Series {
            pending: vec![v],
            ..Series::default()
        };
        let mut registry = Registry::default();
        let dingtalk = || vec![("Connector", "dingtalk".to_owned())];
        for (metric, labels, v) in [
            (&DELIVERED, dingtalk(), 3.0),
            (&SEND_LATENCY, dingtalk(), 40.0),
            (&API_CALLS, vec![("App", "dingtalk#k".to_owned())], 3.0),
            (&DEAD, vec![("Connector", "zentao".to_owned())], 1.0),
        ] {
            registry
                .series
                .insert((metric.emf, labels), (metric, pending(v)));
        }
        *REGISTRY.lock().unwrap() = registry;
        let lines = take_emf(5, true);
        // Two connectors' values for one dimension cannot share a line; the rest can.
        assert_eq!(lines.len(), 2, "{lines:#?}");
        let directives: usize = lines
            .iter()
            .map(|l| l["_aws"]["CloudWatchMetrics"].as_array().unwrap().len())
            .sum();
        assert_eq!(directives, 4, "{lines:#?}");
        let on = |name: &str| lines.iter().find(|l| l.get(name).is_some()).unwrap();
        assert_eq!(on("Delivered")["Connector"], "dingtalk");
        assert_eq!(on("SendLatency")["Connector"], "dingtalk");
        assert_eq!(on("SendLatency")["SendLatency"], json!([40.0]));
        assert_eq!(on("Dead")["Connector"], "zentao");
        assert_eq!(on("ApiCalls")["App"], "dingtalk#k");
    }

    #[test]
    fn essential_metrics_are_the_alarmed_totals_alone() {
        let _one = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        let pending = |v: f64| Series {
            pending: vec![v],
            ..Series::default()
        };
        let mut registry = Registry::default();
        for (metric, connector, v) in [
            (&DELIVERED, "dingtalk", 3.0),
            (&DEAD, "zentao", 1.0),
            (&DEAD, "dingtalk", 2.0),
        ] {
            registry.series.insert(
                (metric.emf, vec![("Connector", connector.to_owned())]),
                (metric, pending(v)),
            );
        }
        *REGISTRY.lock().unwrap() = registry;
        let lines = take_emf(5, false);
        let dead: Vec<&Value> = lines.iter().map(|l| &l["Dead"]).collect();
        assert_eq!(dead, [&json!(2.0), &json!(1.0)], "{lines:#?}");
        for l in &lines {
            assert!(
                l.get("Delivered").is_none() && l.get("Connector").is_none(),
                "{l}"
            );
            assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        }
    }
}
