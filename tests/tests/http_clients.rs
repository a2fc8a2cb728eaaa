//! Both HTTPS clients (the connectors' reqwest and the AWS SDK's) speak TLS with the one crypto
//! provider the binaries carry (rustls on ring): each opens an `https://` connection with a TLS
//! ClientHello. Nothing here reaches the internet: the listener only reads the first bytes.
//! And the AWS configuration a Lambda function builds from its environment alone works.

use std::time::Duration;

use hookbridge::store::HistoryStore;
use hookbridge::store::dynamodb::{DynamoStore, sdk};
use hookbridge_tests::dynamo_client;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// The first bytes a client sends to a listener on 127.0.0.1, while `connect` runs.
async fn first_bytes<F: Future>(connect: impl FnOnce(String) -> F) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let read = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 5];
        socket.read_exact(&mut buf).await.unwrap();
        buf
    });
    // The client gives up (no ServerHello comes); what it sent is all that matters.
    let _ = tokio::time::timeout(Duration::from_secs(5), connect(url)).await;
    read.await.unwrap()
}

/// A TLS record header: handshake (22), TLS 1.x.
fn is_client_hello(bytes: &[u8]) -> bool {
    bytes[0] == 22 && bytes[1] == 3
}

#[tokio::test]
async fn the_connectors_client_speaks_tls() {
    let sent = first_bytes(|url| async move {
        let client = hookbridge::http::client(Duration::from_secs(2)).unwrap();
        client.get(url).send().await
    })
    .await;
    assert!(is_client_hello(&sent), "{sent:?}");
}

#[tokio::test]
async fn the_aws_client_speaks_tls() {
    let sent = first_bytes(|url| async move {
        let store = DynamoStore::new(dynamo_client(&url), "t", Duration::from_secs(60));
        store.deliveries_of("EVT#x").await
    })
    .await;
    assert!(is_client_hello(&sent), "{sent:?}");
}

/// What a function (built without `aws-profiles`) gives its DynamoDB client: region, keys and
/// endpoint from the variables, as Lambda (or a local run) sets them.
#[tokio::test]
async fn the_environment_alone_configures_dynamodb() {
    let endpoint = hookbridge_tests::dynamodb_endpoint();
    let config = hookbridge::http::env_config(move |name| {
        match name {
            "AWS_REGION" => Some("cn-north-1"),
            "AWS_ACCESS_KEY_ID" => Some("x"),
            "AWS_SECRET_ACCESS_KEY" => Some("x"),
            "AWS_SESSION_TOKEN" => Some(""),
            // The service's own variable wins over AWS_ENDPOINT_URL, as in the SDK.
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9"),
            "AWS_ENDPOINT_URL_DYNAMODB" => Some(endpoint.as_str()),
            _ => None,
        }
        .map(str::to_owned)
    });
    assert_eq!(config.region().map(|r| r.as_ref()), Some("cn-north-1"));
    let client = sdk::Client::new(&config);
    let table = format!("hookbridge-test-{:016x}", fastrand::u64(..));
    DynamoStore::create_table(&client, &table).await.unwrap();
    let store = DynamoStore::new(client, table, Duration::from_secs(60));
    assert_eq!(store.deliveries_of("EVT#x").await.unwrap(), vec![]);
}

/// A connection dropped before its answer is an I/O error to the SDK, which it retries (as
/// it did with its own client): the second connection's answer is the store's.
#[tokio::test]
async fn the_aws_client_retries_a_dropped_connection() {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut requests = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 64 * 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            requests += 1;
            if requests == 1 {
                continue; // dropped unanswered
            }
            let body = "{}";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            return requests;
        }
    });
    let store = DynamoStore::new(dynamo_client(&url), "t", Duration::from_secs(60));
    let key = hookbridge::event::DeliveryKey {
        pk: "EVT#x".into(),
        sk: "DLV#dingtalk#0".into(),
    };
    assert_eq!(store.delivery(&key).await.unwrap(), None);
    assert_eq!(server.await.unwrap(), 2, "asked once more after the drop");
}
