//! Metrics as CloudWatch Embedded Metric Format: a data point is one JSON line on stdout, which
//! CloudWatch Logs turns into a metric in the namespace `hookbridge`, with no API call and no
//! agent. Written only in Lambda (where stdout is the function's log); elsewhere a data point
//! is dropped, and the log line that goes with it tells the same.

use std::io::Write;

use serde_json::{Value, json};

use crate::event::now_ms;

pub const NAMESPACE: &str = "hookbridge";

/// The EMF line for one data point of `name` with its `dimensions`.
pub fn line(name: &str, value: f64, unit: &str, dimensions: &[(&str, &str)]) -> Value {
    let keys: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let mut line = json!({
        "_aws": {
            "Timestamp": now_ms(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [keys],
                "Metrics": [{ "Name": name, "Unit": unit }],
            }],
        },
        name: value,
    });
    for (k, v) in dimensions {
        line[*k] = json!(v);
    }
    line
}

/// Emits one data point, in Lambda.
pub fn emit(name: &str, value: f64, unit: &str, dimensions: &[(&str, &str)]) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() {
        return;
    }
    let text = line(name, value, unit, dimensions).to_string();
    // A metric is never worth failing a delivery for.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_point_is_an_emf_line() {
        let l = line(
            "DingTalkQuotaUsed",
            80.0,
            "Percent",
            &[("App", "dingtalk#k")],
        );
        assert_eq!(l["DingTalkQuotaUsed"], 80.0);
        assert_eq!(l["App"], "dingtalk#k");
        let m = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], "hookbridge");
        assert_eq!(m["Dimensions"], json!([["App"]]));
        assert_eq!(
            m["Metrics"][0],
            json!({"Name": "DingTalkQuotaUsed", "Unit": "Percent"})
        );
    }
}
