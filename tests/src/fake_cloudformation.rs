//! A fake AWS CloudFormation on 127.0.0.1 that answers `DescribeStacks` (AWS query protocol,
//! XML) for one stack whose outputs are those template.yaml declares, so that what reads a
//! stack's outputs is tested against the names the stack really has.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;

pub const STACK: &str = "hookbridge";
pub const API_URL: &str = "https://abc123.execute-api.cn-north-1.amazonaws.com.cn";
pub const FRONT: &str = "http://203.0.113.10 http://203.0.113.11";
pub const EGRESS_IP: &str = "198.51.100.7";

/// The output names of template.yaml's `Outputs` section.
pub fn template_outputs() -> Vec<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let outputs = text
        .split("\nOutputs:\n")
        .nth(1)
        .expect("template.yaml has Outputs");
    outputs
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|k| !k.starts_with(' '))
        .map(str::to_owned)
        .collect()
}

/// The value of the `SenderFunctions` output as template.yaml builds it, each function's
/// physical name being `hookbridge-<its logical id>`.
pub fn sender_functions() -> String {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    let outputs = &text[text.find("\nOutputs:\n").unwrap()..];
    let value = outputs
        .lines()
        .skip_while(|l| l.trim() != "SenderFunctions:")
        .find_map(|l| l.trim().strip_prefix("Value: !Sub "))
        .expect("a SenderFunctions output")
        .trim_matches('"');
    value.replace("${", "hookbridge-").replace('}', "")
}

/// Starts the fake; `front`: whether the stack has the 浙政钉 static-IP front (its output is
/// conditional). Returns its URL.
pub async fn start(front: bool) -> String {
    start_with(front, "off").await
}

/// [`start`] for a stack deployed with this `EgressMode` (the stack's own NAT modes output the
/// address, [`EGRESS_IP`]).
pub async fn start_with(front: bool, egress: &str) -> String {
    let own_nat = matches!(egress, "nat-gateway" | "nat-instance");
    let outputs: Vec<(String, String)> = template_outputs()
        .into_iter()
        .filter(|k| front || k != "GovDingCallbackBase")
        .filter(|k| own_nat || k != "EgressIp")
        .map(|k| {
            let v = match k.as_str() {
                "ApiUrl" => API_URL.to_owned(),
                "GovDingCallbackBase" => FRONT.to_owned(),
                "EgressMode" => egress.to_owned(),
                "EgressIp" => EGRESS_IP.to_owned(),
                "SenderFunctions" => sender_functions(),
                other => format!("value-of-{other}"),
            };
            (k, v)
        })
        .collect();
    let app = Router::new()
        .route("/", post(describe_stacks))
        .with_state(std::sync::Arc::new(outputs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn describe_stacks(
    State(outputs): State<std::sync::Arc<Vec<(String, String)>>>,
    body: Bytes,
) -> impl IntoResponse {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let xml = [("content-type", "text/xml")];
    if get("Action") != Some("DescribeStacks") || get("StackName") != Some(STACK) {
        let name = get("StackName").unwrap_or("");
        let error = format!(
            "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error>\
             <Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id {name} does \
             not exist</Message></Error><RequestId>r1</RequestId></ErrorResponse>"
        );
        return (StatusCode::BAD_REQUEST, xml, error);
    }
    let members: String = outputs
        .iter()
        .map(|(k, v)| {
            format!("<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>")
        })
        .collect();
    let body = format!(
        "<DescribeStacksResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\">\
         <DescribeStacksResult><Stacks><member><StackName>{STACK}</StackName>\
         <StackId>arn:aws-cn:cloudformation:cn-north-1:123456789012:stack/{STACK}/1</StackId>\
         <CreationTime>2026-12-01T00:00:00Z</CreationTime><StackStatus>UPDATE_COMPLETE</StackStatus>\
         <Outputs>{members}</Outputs></member></Stacks></DescribeStacksResult>\
         <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></DescribeStacksResponse>"
    );
    (StatusCode::OK, xml, body)
}
