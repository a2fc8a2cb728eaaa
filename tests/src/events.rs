//! Real Lambda event payloads: API Gateway HTTP API (format 2.0) requests and DynamoDB stream
//! batches whose images are read back from DynamoDB Local.

use base64::Engine;
use serde_json::{Value, json};

use crate::{dynamo_client, dynamodb_endpoint};

/// An API Gateway HTTP API payload (format 2.0) as it reaches the function.
pub fn apigw_v2(path: &str, body: &str, token: Option<&str>, base64: bool) -> Value {
    let mut headers = json!({
        "content-type": "application/json; charset=utf-8",
        "host": "abc123.execute-api.cn-north-1.amazonaws.com.cn",
        "user-agent": "HAP-Webhook",
        "x-forwarded-for": "10.1.2.3",
    });
    if let Some(t) = token {
        headers["x-hookbridge-token"] = json!(t);
    }
    let payload = json!({
        "version": "2.0",
        "routeKey": format!("POST {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.cn-north-1.amazonaws.com.cn",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.1.2.3", "userAgent": "HAP-Webhook"},
            "requestId": "LV7fzho-PHcEJPw=",
            "routeKey": format!("POST {path}"),
            "stage": "$default",
            "time": "22/Nov/2026:13:08:21 +0000",
            "timeEpoch": 1795871301067i64
        },
        "body": if base64 { base64::engine::general_purpose::STANDARD.encode(body) } else { body.to_owned() },
        "isBase64Encoded": base64
    });
    payload
}

/// An ALB target-group event, as the static-IP front (NLB → internal ALB) invokes a function;
/// `forwarded` is the X-Forwarded-For the ALB passes (the client's address last).
pub fn alb(path: &str, body: &str, forwarded: &str) -> Value {
    json!({
        "requestContext": {"elb": {"targetGroupArn": "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/govding/0123456789abcdef"}},
        "httpMethod": "POST",
        "path": path,
        "queryStringParameters": {},
        "headers": {
            "content-type": "application/x-www-form-urlencoded;charset=UTF-8",
            "host": "203.0.113.10",
            "x-forwarded-for": forwarded,
            "x-forwarded-port": "80",
            "x-forwarded-proto": "http"
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// One stream record per item, with the image as DynamoDB Local stores it.
pub async fn stream_batch(store_table: &str, items: &[(&str, &str, &str)]) -> Value {
    let client = dynamo_client(&dynamodb_endpoint());
    let mut records = vec![];
    for (i, (event_name, pk, sk)) in items.iter().enumerate() {
        let out = client
            .get_item()
            .table_name(store_table)
            .key(
                "pk",
                hookbridge::store::dynamodb::sdk::types::AttributeValue::S((*pk).to_owned()),
            )
            .key(
                "sk",
                hookbridge::store::dynamodb::sdk::types::AttributeValue::S((*sk).to_owned()),
            )
            .send()
            .await
            .unwrap();
        let image: serde_dynamo::Item = out.item.expect("item exists").into();
        records.push(json!({
            "eventID": format!("c4ca4238a0b923820dcc509a6f75849{i}"),
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "cn-north-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795871301,
                "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
                "NewImage": image,
                "SequenceNumber": format!("11100000000000{i:010}"),
                "SizeBytes": 512,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": format!("arn:aws-cn:dynamodb:cn-north-1:123456789012:table/{store_table}/stream/2026-11-22T00:00:00.000")
        }));
    }
    json!({ "Records": records })
}

/// An EventBridge scheduled event, as the sweeper's schedule sends it.
pub fn schedule() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-22T13:40:00Z",
        "region": "cn-north-1",
        "resources": ["arn:aws-cn:events:cn-north-1:123456789012:rule/hookbridge-sweeper"],
        "detail": {}
    })
}
