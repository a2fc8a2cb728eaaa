//! The DynamoDB store: one table (events, deliveries, tokens, links, cache entries), items
//! mapped with `serde_dynamo`.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | event | `EVT#<source>#<key>` | `EVT` |
//! | delivery (its state) | the event's pk | `DLV#<connector>#<n>` |
//! | delivery (its request, when the event cannot hold it) | the event's pk | `REQ#<connector>#<n>#<hash>` |
//! | token | `TOKEN#<name>` | `TOKEN` |
//!
//! DynamoDB bills a write by the whole item, so what is written once and what changes are
//! apart: the event holds its body and its deliveries' rendered requests (recipients and
//! message), deflated together (a card repeats much of the body it came from), written once;
//! each delivery's state, which the sender changes on every claim and outcome, stays under
//! 1 KB, one write unit each. Requests that would make the event more than one read unit go to
//! items of their own instead, whose key ends in a hash of their content, so a racing
//! duplicate's re-rendering never overwrites what a delivery sends.
//!
//! Deliveries in `sending`, `retrying` or `dead` carry `due_status`/`due_at`, the keys of the
//! sparse GSI `status-due` the sweeper queries; a parked delivery's entry stays when it leaves
//! that status, and the sweeper reads the index from a cursor (`sweep.rs`). `ttl` (epoch seconds) expires old items; DynamoDB
//! Local does not delete them, and nothing here relies on deletion.

mod sweep;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
pub use aws_sdk_dynamodb as sdk;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, PutRequest, ReturnValue, ScalarAttributeType,
    StreamSpecification, StreamViewType, WriteRequest,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha1::{Digest, Sha1};
use tracing::instrument;

use super::{
    CacheStore, DeliveryStore, Due, EventStore, HistoryStore, Inserted, RateStore, ReceiptStore,
    StoreError, TokenRecord, TokenStore, Usage, UsageStore,
};
use crate::event::{
    Action, Answer, Delivery, DeliveryFilter, DeliveryKey, Event, EventFilter, Millis, Replay,
    Settled, Status,
};

pub const STATUS_DUE_INDEX: &str = "status-due";
const DELIVERY_PREFIX: &str = "DLV#";
const REQUEST_PREFIX: &str = "REQ#";
/// Conditional puts a webhook has in flight at once: an event's up to 99 states go out in a
/// few round trips without opening a connection for each.
const PUTS_AT_ONCE: usize = 10;

type Item = HashMap<String, AttributeValue>;

/// Every item of a query or scan, through all its pages.
macro_rules! all_items {
    ($request:expr) => {
        $request
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<Item>, _>>()
            .await
            .map_err(unavailable)
    };
}
const EVENT_SK: &str = "EVT";
const TOKEN_SK: &str = "TOKEN";
const LINK_SK: &str = "LINK";
const CACHE_SK: &str = "CACHE";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
    /// The sweep's cursors, kept between sweeps of a warm sweeper.
    cursors: Arc<Mutex<Option<sweep::Cursors>>>,
}

#[derive(Serialize, Deserialize)]
struct EventItem {
    pk: String,
    sk: String,
    /// Source and key, in events written before they were read from `pk` (`EVT#<source>#<key>`):
    /// every byte counts towards the one write unit of an event and its card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    kind: String,
    received_at: Millis,
    /// The body, in events written before it moved into the packed [`EventBody`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw: Option<String>,
    ttl: i64,
}

/// What an event packs into `z`: the body exactly as received and its deliveries' requests.
/// The normalized payload is not stored: nothing reads it back, it is what the source's parser
/// makes of `raw`, and it would double the event's write.
struct EventBody {
    raw: String,
    /// Each delivery's request, by the delivery's sort key (read back by an insert that
    /// finds the event and some of its states missing).
    requests: BTreeMap<String, Request>,
}

impl EventBody {
    /// The requests as one line of JSON, then the body as it came: not escaped into a JSON
    /// string, the body deflates against the cards made from it (a HAP to-do and its card in
    /// under 1 KB, one write unit).
    fn pack(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec(&self.requests).unwrap_or_default();
        text.push(b'\n');
        text.extend_from_slice(self.raw.as_bytes());
        miniz_oxide::deflate::compress_to_vec(&text, 10)
    }

    fn unpack(packed: &[u8]) -> Result<Self, String> {
        let text = inflate_bytes(packed)?;
        // Compact JSON holds no raw line break: the first one ends it.
        let split = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
        let requests = serde_json::from_slice(&text[..split])
            .map_err(|e| format!("requests do not parse: {e}"))?;
        let raw = String::from_utf8(text.get(split + 1..).unwrap_or_default().to_vec())
            .map_err(|e| format!("body is not UTF-8: {e}"))?;
        Ok(Self { raw, requests })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Request {
    /// Recipients and message, here.
    Here(Vec<String>, Value),
    /// The sort key of the delivery's own request item.
    Item(String),
}

/// The event an item holds, with its body unpacked.
fn decode_event(mut item: Item) -> Result<(Event, EventBody), StoreError> {
    let packed = item.remove(PACKED);
    let it: EventItem = serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Corrupt("event".into(), e.to_string()))?;
    let corrupt = |e: String| StoreError::Corrupt(it.pk.clone(), e);
    let body = match (packed, &it.raw) {
        (Some(AttributeValue::B(z)), _) => EventBody::unpack(z.as_ref()).map_err(corrupt)?,
        (None, Some(raw)) => EventBody {
            raw: raw.clone(),
            requests: BTreeMap::new(),
        },
        _ => return Err(corrupt("no body".into())),
    };
    let (source, key) = match (it.source, it.key) {
        (Some(source), Some(key)) => (source, key),
        _ => it
            .pk
            .strip_prefix("EVT#")
            .and_then(|rest| rest.split_once('#'))
            .map(|(source, key)| (source.to_owned(), key.to_owned()))
            .ok_or_else(|| corrupt("no source and key".into()))?,
    };
    let event = Event {
        source,
        key,
        kind: it.kind,
        received_at: it.received_at,
        payload: Value::Null,
        raw: body.raw.clone(),
    };
    Ok((event, body))
}

#[derive(Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    connector: String,
    action: Action,
    status: Status,
    attempts: u32,
    /// Where the request is: `EVT` (packed in the event), or the sort key of a [`RequestItem`].
    request: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<Millis>,
    created_at: Millis,
    updated_at: Millis,
    ttl: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_at: Option<Millis>,
    /// Appended by [`ReceiptStore::add_receipt`], each one JSON text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    receipts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replays: Vec<Replay>,
    /// Appended by [`DeliveryStore::record`], one per attempt, each one JSON text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    answers: Vec<String>,
}

/// What a delivery sends when the event cannot hold it (see the module docs), written once
/// before its state: recipients and message as one deflated JSON array in `z` (binary). Items
/// written before requests were packed hold them as `recipients` and `message`, and are read
/// as they are.
#[derive(Serialize, Deserialize)]
struct RequestItem {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    ttl: i64,
}

/// The attribute that holds an event's [`EventBody`] or a request's `[recipients, message]`,
/// deflated JSON.
const PACKED: &str = "z";

/// The most a packed attribute may inflate to: far above DynamoDB's 400 KB item, far below
/// what a corrupt item could make a sender allocate.
const PACKED_LIMIT: usize = 4 << 20;

/// The largest packed event body that also holds its requests: every sender of the event
/// reads the event, and up to 4 KB that is one read unit.
const EVENT_BODY_LIMIT: usize = 4 << 10;

fn deflate(value: &impl Serialize) -> Vec<u8> {
    let text = serde_json::to_vec(value).unwrap_or_default();
    miniz_oxide::deflate::compress_to_vec(&text, 6)
}

fn inflate<T: serde::de::DeserializeOwned>(packed: &[u8]) -> Result<T, String> {
    serde_json::from_slice(&inflate_bytes(packed)?).map_err(|e| format!("does not parse: {e}"))
}

/// What `packed` deflated, refused past [`PACKED_LIMIT`] (a hand-made item that inflates
/// without end).
fn inflate_bytes(packed: &[u8]) -> Result<Vec<u8>, String> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(packed, PACKED_LIMIT)
        .map_err(|e| format!("does not inflate: {e}"))
}

/// Calls `call` with `batch` until it leaves nothing unprocessed (DynamoDB's batch calls hand
/// back what they throttled), pausing 100 ms, 200 ms… between tries as AWS advises; at most 8
/// tries. Returns each call's answer.
async fn until_processed<B, R, Fut>(
    batch: B,
    what: &str,
    call: impl Fn(B) -> Fut,
) -> Result<Vec<R>, StoreError>
where
    Fut: Future<Output = Result<(R, Option<B>), StoreError>>,
{
    let mut answers = vec![];
    let mut left = Some(batch);
    for attempt in 0..8u64 {
        let Some(batch) = left.take() else { break };
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        let (answer, unprocessed) = call(batch).await?;
        answers.push(answer);
        left = unprocessed;
    }
    match left {
        Some(_) => Err(StoreError::Unavailable(format!(
            "DynamoDB left {what} unprocessed after 8 tries"
        ))),
        None => Ok(answers),
    }
}

#[async_trait]
impl ReceiptStore for DynamoStore {
    async fn link(
        &self,
        connector: &str,
        reference: &str,
        key: &DeliveryKey,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("LINK#{connector}#{reference}")))
            .item("sk", s(LINK_SK))
            .item("target_pk", s(&key.pk))
            .item("target_sk", s(&key.sk))
            .item("ttl", n(self.ttl(crate::event::now_ms())))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn linked(
        &self,
        connector: &str,
        reference: &str,
    ) -> Result<Option<DeliveryKey>, StoreError> {
        let name = format!("LINK#{connector}#{reference}");
        let Some(item) = self.item(&name, LINK_SK).await? else {
            return Ok(None);
        };
        let target = |k: &str| match item.get(k) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(StoreError::Corrupt(name.clone(), format!("no {k}"))),
        };
        Ok(Some(DeliveryKey {
            pk: target("target_pk")?,
            sk: target("target_sk")?,
        }))
    }

    async fn add_receipt(&self, key: &DeliveryKey, receipt: &Value) -> Result<bool, StoreError> {
        // One write, whatever is there: list_append keeps receipts that arrive at once.
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&key.pk, &key.sk)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET receipts = list_append(if_not_exists(receipts, :none), :r)")
            .expression_attribute_values(":none", AttributeValue::L(vec![]))
            .expression_attribute_values(":r", AttributeValue::L(vec![s(&receipt.to_string())]))
            .send()
            .await;
        applied(res)
    }
}

#[async_trait]
impl CacheStore for DynamoStore {
    async fn cached(&self, name: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let item = self
            .item(&format!("CACHE#{name}"), CACHE_SK)
            .await?
            .unwrap_or_default();
        // DynamoDB's TTL deletes late (up to days): expiry is checked here, not left to it.
        let live = matches!(item.get("expires_at"), Some(AttributeValue::N(e)) if e.parse::<Millis>().is_ok_and(|e| e > now));
        Ok(match item.get("value") {
            Some(AttributeValue::S(v)) if live => Some(v.clone()),
            _ => None,
        })
    }

    async fn cache(&self, name: &str, value: &str, expires_at: Millis) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&format!("CACHE#{name}")))
            .item("sk", s(CACHE_SK))
            .item("value", s(value))
            .item("expires_at", n(expires_at))
            .item("ttl", n(expires_at / 1000 + 3600))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget(&self, name: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("CACHE#{name}"), CACHE_SK)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// `QUOTA#<name>` / `<period>`: one counter a month, kept a little over a year.
#[derive(Deserialize)]
struct UsageItem {
    pk: String,
    sk: String,
    calls: u64,
    #[serde(default)]
    quota: u64,
}

const USAGE_KEPT_SECS: i64 = 400 * 86_400;

/// How long a pacing window's item is kept: long enough for any late reader, no longer.
const RATE_KEPT_SECS: i64 = 120;

/// One small item per window (`RATE#<name>` / window number), counted up on condition that it
/// has room: every sender of the fleet shares it, whichever instance it runs in.
#[async_trait]
impl RateStore for DynamoStore {
    async fn take_slot(&self, name: &str, window: i64, limit: u32) -> Result<bool, StoreError> {
        let res = self
            .update(&format!("RATE#{name}"), &window.to_string())
            .condition_expression("attribute_not_exists(calls) OR calls < :limit")
            .update_expression("ADD calls :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .expression_attribute_values(":ttl", n(crate::event::now_ms() / 1000 + RATE_KEPT_SECS))
            .send()
            .await;
        applied(res)
    }

    /// `MARK#<name>` / `MARK`: one item per name, raised on condition that it is lower.
    async fn advance(&self, name: &str, mark: i64) -> Result<bool, StoreError> {
        let res = self
            .update(&format!("MARK#{name}"), "MARK")
            .condition_expression("attribute_not_exists(mark) OR mark < :mark")
            .update_expression("SET mark = :mark, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":mark", n(mark))
            .expression_attribute_values(":ttl", n(crate::event::now_ms() / 1000 + MARK_KEPT_SECS))
            .send()
            .await;
        applied(res)
    }
}

/// How long a mark outlives its last use: a day. A mark that expired is lower than any that a
/// sender takes later (marks follow the clock), so losing it loses nothing.
const MARK_KEPT_SECS: i64 = 86_400;

#[async_trait]
impl UsageStore for DynamoStore {
    async fn add_usage(
        &self,
        name: &str,
        period: &str,
        calls: u64,
        quota: u64,
    ) -> Result<u64, StoreError> {
        let out = self
            .update(&format!("QUOTA#{name}"), period)
            .update_expression("ADD calls :n SET quota = :q, #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":n", AttributeValue::N(calls.to_string()))
            .expression_attribute_values(":q", AttributeValue::N(quota.to_string()))
            .expression_attribute_values(":ttl", n(crate::event::now_ms() / 1000 + USAGE_KEPT_SECS))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        match out.attributes().and_then(|a| a.get("calls")) {
            Some(AttributeValue::N(c)) => c
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("QUOTA#{name}/{period}"), format!("{e}"))),
            _ => Err(StoreError::Corrupt(
                format!("QUOTA#{name}/{period}"),
                "no calls after ADD".into(),
            )),
        }
    }

    async fn usage_in(&self, period: &str) -> Result<Vec<Usage>, StoreError> {
        let items = all_items!(
            self.client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :quota) AND sk = :period")
                .expression_attribute_values(":quota", s("QUOTA#"))
                .expression_attribute_values(":period", s(period))
        )?;
        items
            .into_iter()
            .map(|item| {
                let it: UsageItem = serde_dynamo::from_item(item)
                    .map_err(|e| StoreError::Corrupt("usage".into(), e.to_string()))?;
                Ok(Usage {
                    name: it.pk.trim_start_matches("QUOTA#").to_owned(),
                    period: it.sk,
                    calls: it.calls,
                    quota: it.quota,
                })
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct TokenItem {
    access_token: Option<String>,
    refresh_at: Option<Millis>,
    token_expires_at: Option<Millis>,
}

impl DynamoStore {
    /// The store on `table`, with AWS credentials and region from the environment.
    pub async fn from_env(table: impl Into<String>, retention: Duration) -> Self {
        DynamoStore::new(
            Client::new(crate::http::aws_config().await),
            table,
            retention,
        )
    }

    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            retention,
            cursors: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn ttl(&self, now: Millis) -> i64 {
        now / 1000 + self.retention.as_secs() as i64
    }

    /// A delivery's own request item, for an event that cannot hold it: (its key, the item).
    fn request_item(&self, d: &Delivery) -> Result<(String, Item), StoreError> {
        let message = d.message.to_string();
        let mut hash = Sha1::new();
        for r in &d.recipients {
            hash.update(r.as_bytes());
            hash.update([0]);
        }
        hash.update(message.as_bytes());
        let digest = hex::encode(&hash.finalize()[..8]);
        let request = RequestItem {
            pk: d.pk.clone(),
            sk: format!(
                "{REQUEST_PREFIX}{}#{digest}",
                d.sk.strip_prefix(DELIVERY_PREFIX).unwrap_or(&d.sk)
            ),
            recipients: vec![],
            message: None,
            ttl: self.ttl(d.created_at),
        };
        let sk = request.sk.clone();
        let mut item: Item = serde_dynamo::to_item(request)
            .map_err(|e| StoreError::Corrupt(d.key().to_string(), e.to_string()))?;
        let packed = deflate(&(&d.recipients, &d.message));
        item.insert(PACKED.into(), AttributeValue::B(Blob::new(packed)));
        Ok((sk, item))
    }

    /// A delivery's state item, its request at `request` (see [`DeliveryItem::request`]).
    fn state_item(&self, d: &Delivery, request: &str) -> Result<Item, StoreError> {
        let state = DeliveryItem {
            pk: d.pk.clone(),
            sk: d.sk.clone(),
            connector: d.connector.clone(),
            action: d.action.clone(),
            status: d.status,
            attempts: d.attempts,
            request: request.to_owned(),
            result: d.result.as_ref().map(ToString::to_string),
            last_error: d.last_error.clone(),
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            ttl: self.ttl(d.created_at),
            due_status: d.status.is_indexed().then_some(d.status),
            due_at: d
                .status
                .is_indexed()
                .then(|| d.next_attempt_at.unwrap_or(d.updated_at)),
            receipts: d.receipts.iter().map(ToString::to_string).collect(),
            replays: d.replays.clone(),
            answers: d
                .answers
                .iter()
                .filter_map(|a| serde_json::to_string(a).ok())
                .collect(),
        };
        serde_dynamo::to_item(state)
            .map_err(|e| StoreError::Corrupt(d.key().to_string(), e.to_string()))
    }

    /// The delivery whose state is `state`, with its request read (consistently: it was
    /// written before the state, and must be seen).
    async fn with_request(&self, state: Item) -> Result<Delivery, StoreError> {
        self.with_request_or(state, None).await
    }

    /// [`Self::with_request`], given the event item when it was read already (a claim reads
    /// it alongside, as most requests are in it).
    async fn with_request_or(
        &self,
        state: Item,
        event: Option<Option<Item>>,
    ) -> Result<Delivery, StoreError> {
        let it: DeliveryItem = serde_dynamo::from_item(state)
            .map_err(|e| StoreError::Corrupt("delivery".into(), e.to_string()))?;
        let request = match event {
            Some(event) if it.request == EVENT_SK => event,
            _ => self.item(&it.pk, &it.request).await?,
        };
        decode_delivery(it, request)
    }

    /// Every delivery state and request under `pk`, or (without `pk`) in the table, joined.
    /// The deliveries in an indexed status (dead, and the parked ones), newest first, from
    /// the status-due index rather than a scan of the table: a page reads what it shows.
    async fn list_indexed(
        &self,
        status: Status,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // A checking delivery may still be under its claim's entry (`keeps_claim_entry`).
        let keys: &[Status] = match status {
            Status::Checking => &[Status::Checking, Status::Sending],
            _ => &[status],
        };
        let cursors = self.cursors().await?;
        let mut found = vec![];
        for key in keys {
            let mut start = None;
            let mut here = 0;
            loop {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(STATUS_DUE_INDEX)
                    // A parked delivery's entry is at or after its status's cursor; those
                    // before it are left behind by deliveries that moved on.
                    .key_condition_expression("due_status = :s AND due_at >= :from")
                    .expression_attribute_values(":s", s(key.as_str()))
                    .expression_attribute_values(":from", n(cursors.from(*key)))
                    .scan_index_forward(false)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in out.items() {
                    let Ok(key) = serde_dynamo::from_item::<_, DeliveryKey>(item.clone()) else {
                        continue;
                    };
                    if let Some(d) = self.delivery(&key).await?
                        && filter.matches(&d)
                    {
                        found.push(d);
                        here += 1;
                    }
                }
                start = out.last_evaluated_key().cloned();
                if start.is_none() || here >= limit {
                    break;
                }
            }
        }
        Ok(super::newest_first(found, limit))
    }

    async fn deliveries(&self, pk: Option<&str>) -> Result<Vec<Delivery>, StoreError> {
        let mut states = vec![];
        let mut requests = HashMap::new();
        for prefix in [DELIVERY_PREFIX, REQUEST_PREFIX, EVENT_SK] {
            let items = match pk {
                Some(pk) => all_items!(
                    self.client
                        .query()
                        .table_name(&self.table)
                        .consistent_read(true)
                        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                        .expression_attribute_values(":pk", s(pk))
                        .expression_attribute_values(":prefix", s(prefix))
                )?,
                None => all_items!(
                    self.client
                        .scan()
                        .table_name(&self.table)
                        .filter_expression("begins_with(sk, :prefix)")
                        .expression_attribute_values(":prefix", s(prefix))
                )?,
            };
            for item in items {
                if prefix == DELIVERY_PREFIX {
                    states.push(
                        serde_dynamo::from_item::<_, DeliveryItem>(item)
                            .map_err(|e| StoreError::Corrupt("delivery".into(), e.to_string()))?,
                    );
                } else if let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) =
                    (item.get("pk"), item.get("sk"))
                {
                    requests.insert((pk.clone(), sk.clone()), item);
                }
            }
        }
        states
            .into_iter()
            .map(|it| {
                let request = requests.get(&(it.pk.clone(), it.request.clone())).cloned();
                decode_delivery(it, request)
            })
            .collect()
    }

    /// Writes request items, 25 to a call, until DynamoDB has taken them all.
    async fn put_requests(&self, requests: Vec<Item>) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let puts: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(|e| StoreError::Corrupt("request".into(), e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            until_processed(puts, "request items", |puts| async move {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, puts)
                    .send()
                    .await
                    .map_err(unavailable)?;
                let left = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|left| !left.is_empty());
                Ok(((), left))
            })
            .await?;
        }
        Ok(())
    }

    /// The event item under `pk`, if any, and the sort keys of the delivery states beside it:
    /// one query (the states sort before `EVT`, the request items after it). Eventually
    /// consistent unless `consistent`: an event or state written a moment ago and not seen is
    /// caught by the conditional writes after.
    async fn stored_event(
        &self,
        pk: &str,
        consistent: bool,
    ) -> Result<(Option<Item>, HashSet<String>), StoreError> {
        let items = all_items!(
            self.client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :event")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":first", s(DELIVERY_PREFIX))
                .expression_attribute_values(":event", s(EVENT_SK))
        )?;
        let mut event = None;
        let mut states = HashSet::new();
        for item in items {
            match item.get("sk") {
                Some(AttributeValue::S(sk)) if sk == EVENT_SK => event = Some(item),
                Some(AttributeValue::S(sk)) => {
                    states.insert(sk.clone());
                }
                _ => {}
            }
        }
        Ok((event, states))
    }

    /// Puts the state of each delivery that is not in `stored` and whose request `body` holds
    /// (in it, or as the key of its own item), unless it exists by then. The puts go out
    /// together, [`PUTS_AT_ONCE`] at a time: each is its own conditional write, so their order
    /// does not matter, and a webhook answers one round trip after its event is stored.
    async fn put_states(
        &self,
        deliveries: &[Delivery],
        body: &EventBody,
        stored: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let mut states = vec![];
        for d in deliveries.iter().filter(|d| !stored.contains(&d.sk)) {
            let request = match body.requests.get(&d.sk) {
                Some(Request::Here(..)) => EVENT_SK,
                Some(Request::Item(sk)) => sk,
                None => continue,
            };
            states.push(self.state_item(d, request)?);
        }
        stream::iter(states.into_iter().map(|item| self.put_new(item)))
            .buffer_unordered(PUTS_AT_ONCE)
            .try_collect::<Vec<bool>>()
            .await?;
        Ok(())
    }

    /// Puts `item` unless its key exists; `false` when it did.
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        applied(put.send().await)
    }

    /// One item, read consistently (a token, link or cache entry just written must be seen).
    async fn item(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// An UpdateItem on one item of the table.
    fn update(&self, pk: &str, sk: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
    }

    fn key(pk: &str, sk: &str) -> Item {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
            ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
        ])
    }

    /// Creates the table as `template.yaml` declares it (for tests and local DynamoDB).
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attr = |name: &str, t| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .expect("static attribute definition")
        };
        let key = |name: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .expect("static key schema")
        };
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk", ScalarAttributeType::S))
            .attribute_definitions(attr("sk", ScalarAttributeType::S))
            .attribute_definitions(attr("due_status", ScalarAttributeType::S))
            .attribute_definitions(attr("due_at", ScalarAttributeType::N))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(STATUS_DUE_INDEX)
                    .key_schema(key("due_status", KeyType::Hash))
                    .key_schema(key("due_at", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .expect("static index"),
            )
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .expect("static stream specification"),
            )
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// A short, actionable text: the service's error code and message, or the transport failure.
fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(match e.as_service_error() {
        Some(se) => format!(
            "DynamoDB {}: {}",
            se.code().unwrap_or("error"),
            se.message().unwrap_or("")
        ),
        None => DisplayErrorContext(&e).to_string(),
    })
}

/// Whether a conditional write (any operation's) was refused for its condition.
fn is_condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

/// A conditional write: `true` if it was applied, `false` if its condition did not hold.
fn applied<T, E, R>(res: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_condition_failed(&e) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

/// Whether a send's outcome keeps the index entry its claim made (`sending`, due when the
/// claim lapses): a send to be followed up no later than that. The sweeper then finds it at
/// the lapse and re-queues it for the follow-up; the outcome is one write of the state instead
/// of three (the entry's keys changed: a delete and a put in the index). The follow-up comes
/// that much later (at five minutes with the defaults instead of one), which only delays
/// learning that DingTalk dropped a send.
fn keeps_claim_entry(claimed: &Delivery, settled: &Settled) -> bool {
    claimed.status == Status::Sending
        && settled.status == Status::Checking
        && settled
            .next_attempt_at
            .zip(claimed.next_attempt_at)
            .is_some_and(|(at, lapse)| at <= lapse)
}

/// The delivery `it` is, its request read from `request`, the item `it.request` names (the
/// event, or the delivery's own request item).
fn decode_delivery(it: DeliveryItem, request: Option<Item>) -> Result<Delivery, StoreError> {
    let corrupt_request = |e: String| StoreError::Corrupt(format!("{}/{}", it.pk, it.request), e);
    let json = |s: &str| {
        serde_json::from_str(s)
            .map_err(|e| StoreError::Corrupt(format!("{}/{}", it.pk, it.sk), e.to_string()))
    };
    let Some(mut request) = request else {
        return Err(corrupt_request("no such item".into()));
    };
    let (recipients, message) = if it.request == EVENT_SK {
        match decode_event(request)?.1.requests.remove(&it.sk) {
            Some(Request::Here(recipients, message)) => (recipients, message),
            _ => {
                return Err(corrupt_request(format!(
                    "the event holds no request for {}",
                    it.sk
                )));
            }
        }
    } else {
        let packed = request.remove(PACKED);
        let request: RequestItem =
            serde_dynamo::from_item(request).map_err(|e| corrupt_request(e.to_string()))?;
        match (packed, request.message) {
            (Some(AttributeValue::B(z)), _) => inflate(z.as_ref()).map_err(corrupt_request)?,
            (None, Some(message)) => (request.recipients, json(&message)?),
            _ => return Err(corrupt_request("no message".into())),
        }
    };
    Ok(Delivery {
        message,
        result: it.result.as_deref().map(json).transpose()?,
        receipts: it
            .receipts
            .iter()
            .map(|r| json(r))
            .collect::<Result<_, _>>()?,
        pk: it.pk.clone(),
        sk: it.sk.clone(),
        connector: it.connector,
        action: it.action,
        status: it.status,
        attempts: it.attempts,
        recipients,
        last_error: it.last_error,
        next_attempt_at: it.next_attempt_at,
        created_at: it.created_at,
        updated_at: it.updated_at,
        replays: it.replays,
        answers: it
            .answers
            .iter()
            .map(|a| {
                serde_json::from_str(a)
                    .map_err(|e| StoreError::Corrupt(format!("{}/{}", it.pk, it.sk), e.to_string()))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[async_trait]
impl EventStore for DynamoStore {
    /// Without a transaction (billed twice per KB): the event first, only if it is new, with
    /// the requests (or, when they do not fit, after their own items); then each state, only if
    /// it is new (a sender woken by a state finds its request). A source's retry, the usual
    /// duplicate, finds the event and its states and writes nothing. An insert cut short after
    /// its event leaves states unwritten, and nothing acknowledged: the source's retry writes
    /// those the event has requests for, as the first arrival rendered them, and leaves the
    /// others (each may be under way).
    #[instrument(skip_all, fields(event = %crate::logging::LogId(&event.pk()), deliveries = deliveries.len()))]
    async fn insert(&self, event: &Event, deliveries: &[Delivery]) -> Result<Inserted, StoreError> {
        let pk = event.pk();
        let mut stored = self.stored_event(&pk, false).await?;
        if stored.0.is_none() {
            let mut requests = BTreeMap::new();
            for d in deliveries {
                requests.insert(
                    d.sk.clone(),
                    Request::Here(d.recipients.clone(), d.message.clone()),
                );
            }
            let mut body = EventBody {
                raw: event.raw.clone(),
                requests,
            };
            let mut packed = body.pack();
            let mut own = vec![];
            if packed.len() > EVENT_BODY_LIMIT {
                for d in deliveries {
                    let (sk, item) = self.request_item(d)?;
                    body.requests.insert(d.sk.clone(), Request::Item(sk));
                    own.push(item);
                }
                packed = body.pack();
            }
            let mut event_item: Item = serde_dynamo::to_item(EventItem {
                pk: pk.clone(),
                sk: EVENT_SK.into(),
                source: None,
                key: None,
                kind: event.kind.clone(),
                received_at: event.received_at,
                raw: None,
                ttl: self.ttl(event.received_at),
            })
            .map_err(|e| StoreError::Corrupt(pk.clone(), e.to_string()))?;
            event_item.insert(PACKED.into(), AttributeValue::B(Blob::new(packed)));
            self.put_requests(own).await?;
            if self.put_new(event_item).await? {
                self.put_states(deliveries, &body, &HashSet::new()).await?;
                return Ok(Inserted::Created);
            }
            // Another copy of the request got there first.
            stored = self.stored_event(&pk, true).await?;
        }
        if let (Some(item), states) = stored {
            self.put_states(deliveries, &decode_event(item)?.1, &states)
                .await?;
        }
        Ok(Inserted::Duplicate)
    }

    /// A scan of the events (an operator's look, not the pipeline's), filtered in DynamoDB
    /// as far as its attributes allow, then by [`EventFilter::matches`] (the key is in `pk`).
    async fn events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut conditions = vec!["sk = :evt".to_owned()];
        let mut scan = self
            .client
            .scan()
            .table_name(&self.table)
            .expression_attribute_values(":evt", s(EVENT_SK));
        if let Some(source) = &filter.source {
            conditions.push("begins_with(pk, :source)".into());
            scan = scan.expression_attribute_values(":source", s(&format!("EVT#{source}#")));
        }
        if let Some(kind) = &filter.kind {
            conditions.push("kind = :kind".into());
            scan = scan.expression_attribute_values(":kind", s(kind));
        }
        if let Some(since) = filter.since {
            conditions.push("received_at >= :since".into());
            scan = scan.expression_attribute_values(":since", n(since));
        }
        let items = all_items!(scan.filter_expression(conditions.join(" AND ")))?;
        let mut found = vec![];
        for item in items {
            let event = decode_event(item)?.0;
            if filter.matches(&event) {
                found.push(event);
            }
        }
        Ok(super::newest_events(found, limit))
    }

    async fn event(&self, pk: &str) -> Result<Option<Event>, StoreError> {
        let Some(item) = self.item(pk, EVENT_SK).await? else {
            return Ok(None);
        };
        Ok(Some(decode_event(item)?.0))
    }
}

#[async_trait]
impl HistoryStore for DynamoStore {
    async fn deliveries_of(&self, pk: &str) -> Result<Vec<Delivery>, StoreError> {
        self.deliveries(Some(pk)).await
    }

    async fn delivery(&self, key: &DeliveryKey) -> Result<Option<Delivery>, StoreError> {
        match self.item(&key.pk, &key.sk).await? {
            Some(state) => self.with_request(state).await.map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    #[instrument(skip_all, fields(delivery = %key))]
    async fn claim(
        &self,
        key: &DeliveryKey,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<Delivery>, StoreError> {
        let res = self
            .update(&key.pk, &key.sk)
            .condition_expression("#st = :pending")
            .update_expression(
                "SET #st = :sending, attempts = attempts + :one, next_attempt_at = :lease, \
                 updated_at = :now, due_status = :sending, due_at = :lease",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":sending", s(Status::Sending.as_str()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":lease", n(lease_until))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send();
        // The event, where most requests are, is read alongside the claim: a send waits one
        // round trip less, and a claim refused (rare: a record seen twice) costs a read unit.
        let (res, event) = tokio::join!(res, self.item(&key.pk, EVENT_SK));
        match res {
            Ok(out) => match out.attributes {
                Some(state) => self.with_request_or(state, Some(event?)).await.map(Some),
                None => Ok(None),
            },
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    #[instrument(skip_all, fields(delivery = %claimed.key(), status = settled.status.as_str()))]
    async fn record(
        &self,
        claimed: &Delivery,
        settled: &Settled,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .update(&claimed.pk, &claimed.sk)
            .condition_expression("#st = :held AND attempts = :attempts")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":held", s(claimed.status.as_str()))
            .expression_attribute_values(":attempts", n(i64::from(claimed.attempts)))
            .expression_attribute_values(":spent", n(i64::from(settled.attempts)))
            .expression_attribute_values(":status", s(settled.status.as_str()))
            .expression_attribute_values(":now", n(now));
        // Optional attributes: SET when present, REMOVE when absent.
        let mut fields: Vec<(&str, &str, Option<AttributeValue>)> = vec![
            (
                "result",
                ":result",
                settled.result.as_ref().map(|r| s(&r.to_string())),
            ),
            (
                "last_error",
                ":last_error",
                settled.last_error.as_deref().map(s),
            ),
            ("next_attempt_at", ":next", settled.next_attempt_at.map(n)),
            (
                "due_status",
                ":due_status",
                settled
                    .status
                    .is_indexed()
                    .then(|| s(settled.status.as_str())),
            ),
            (
                "due_at",
                ":due_at",
                settled
                    .status
                    .is_indexed()
                    .then(|| n(settled.next_attempt_at.unwrap_or(now))),
            ),
        ];
        // An outcome that parks the delivery again re-keys its entry; any other leaves it,
        // to be passed over by the sweep (see `sweep`).
        if keeps_claim_entry(claimed, settled) || !settled.status.is_indexed() {
            fields.truncate(3);
        }
        let mut set_parts = vec![
            "#st = :status".to_owned(),
            "attempts = :spent".to_owned(),
            "updated_at = :now".to_owned(),
        ];
        let mut remove = vec![];
        for (name, placeholder, value) in fields {
            // Attribute names go through #aliases: `result` is a DynamoDB reserved word.
            let alias = format!("#{name}");
            req = req.expression_attribute_names(&alias, name);
            match value {
                Some(v) => {
                    set_parts.push(format!("{alias} = {placeholder}"));
                    req = req.expression_attribute_values(placeholder, v);
                }
                None => remove.push(alias),
            }
        }
        if let Some(answer) = Answer::of(claimed, settled, now) {
            let text = serde_json::to_string(&answer)
                .map_err(|e| StoreError::Corrupt(claimed.key().to_string(), e.to_string()))?;
            set_parts.push("answers = list_append(if_not_exists(answers, :none), :answer)".into());
            req = req
                .expression_attribute_values(":none", AttributeValue::L(vec![]))
                .expression_attribute_values(":answer", AttributeValue::L(vec![s(&text)]));
        }
        let mut expr = format!("SET {}", set_parts.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        applied(req.update_expression(expr).send().await)
    }

    async fn due(&self, now: Millis, limit: usize) -> Result<Vec<Due>, StoreError> {
        self.due_from_cursors(now, limit).await
    }

    async fn requeue(&self, key: &DeliveryKey, now: Millis) -> Result<bool, StoreError> {
        let parked: Vec<String> = (0..Status::PARKED.len())
            .map(|i| format!("#st = :parked{i}"))
            .collect();
        let mut req = self
            .update(&key.pk, &key.sk)
            .condition_expression(format!(
                "({}) AND next_attempt_at <= :now",
                parked.join(" OR ")
            ))
            // The index entry stays (see `sweep`).
            .update_expression("SET #st = :pending, updated_at = :now REMOVE next_attempt_at")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":now", n(now));
        for (i, status) in Status::PARKED.iter().enumerate() {
            req = req.expression_attribute_values(format!(":parked{i}"), s(status.as_str()));
        }
        applied(req.send().await)
    }

    /// A scan of the deliveries, filtered here with the one [`DeliveryFilter::matches`]: a scan
    /// reads (and is billed for) the whole table whatever it filters, and this is for operators.
    async fn list(
        &self,
        filter: &DeliveryFilter,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        if let Some(status) = filter.status.filter(|s| s.is_indexed()) {
            return self.list_indexed(status, filter, limit).await;
        }
        let mut found = self.deliveries(None).await?;
        found.retain(|d| filter.matches(d));
        Ok(super::newest_first(found, limit))
    }

    /// Read, [`Delivery::replayed`], then written on condition that nothing changed between.
    async fn replay(&self, key: &DeliveryKey, now: Millis) -> Result<Option<Delivery>, StoreError> {
        let Some(current) = self.delivery(key).await? else {
            return Ok(None);
        };
        let Some(replayed) = current.replayed(now) else {
            return Ok(None);
        };
        let replays = serde_dynamo::to_attribute_value(&replayed.replays)
            .map_err(|e| StoreError::Corrupt(key.to_string(), e.to_string()))?;
        let res = self
            .update(&key.pk, &key.sk)
            .condition_expression(
                "(#st = :dead OR #st = :pending) AND attempts = :was AND updated_at = :then",
            )
            .update_expression(
                "SET #st = :pending, attempts = :zero, updated_at = :now, replays = :replays \
                 REMOVE last_error, next_attempt_at, due_status, due_at",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":dead", s(Status::Dead.as_str()))
            .expression_attribute_values(":was", n(i64::from(current.attempts)))
            .expression_attribute_values(":then", n(current.updated_at))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":replays", replays)
            .send()
            .await;
        Ok(applied(res)?.then_some(replayed))
    }

    async fn recalled(
        &self,
        key: &DeliveryKey,
        note: &Value,
        now: Millis,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(current) = self.delivery(key).await? else {
            return Ok(None);
        };
        let Some(recalled) = current.recalled(note.clone(), now) else {
            return Ok(None);
        };
        let res = self
            .update(&key.pk, &key.sk)
            .condition_expression("#st = :was AND updated_at = :then")
            .update_expression(
                "SET #st = :recalled, updated_at = :now, \
                 receipts = list_append(if_not_exists(receipts, :none), :r) \
                 REMOVE next_attempt_at, due_status, due_at",
            )
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":was", s(current.status.as_str()))
            .expression_attribute_values(":then", n(current.updated_at))
            .expression_attribute_values(":recalled", s(Status::Recalled.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":none", AttributeValue::L(vec![]))
            .expression_attribute_values(":r", AttributeValue::L(vec![s(&note.to_string())]))
            .send()
            .await;
        Ok(applied(res)?.then_some(recalled))
    }
}

#[async_trait]
impl TokenStore for DynamoStore {
    async fn token(&self, name: &str) -> Result<Option<TokenRecord>, StoreError> {
        let Some(item) = self.item(&format!("TOKEN#{name}"), TOKEN_SK).await? else {
            return Ok(None);
        };
        let t: TokenItem = serde_dynamo::from_item(item)
            .map_err(|e| StoreError::Corrupt(format!("TOKEN#{name}"), e.to_string()))?;
        Ok(match (t.access_token, t.refresh_at, t.token_expires_at) {
            (Some(access_token), Some(refresh_at), Some(expires_at)) => Some(TokenRecord {
                access_token,
                refresh_at,
                expires_at,
            }),
            _ => None,
        })
    }

    async fn lease(
        &self,
        name: &str,
        owner: &str,
        now: Millis,
        until: Millis,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("TOKEN#{name}"), TOKEN_SK)))
            .condition_expression(
                "(attribute_not_exists(lease_until) OR lease_until <= :now) \
                 AND (attribute_not_exists(refresh_at) OR refresh_at <= :now)",
            )
            .update_expression("SET lease_owner = :owner, lease_until = :until")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        applied(res)
    }

    async fn save_token(&self, name: &str, token: &TokenRecord) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("TOKEN#{name}"), TOKEN_SK)))
            .update_expression(
                "SET access_token = :t, refresh_at = :r, token_expires_at = :e, #ttl = :ttl \
                 REMOVE lease_owner, lease_until",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":t", s(&token.access_token))
            .expression_attribute_values(":r", n(token.refresh_at))
            .expression_attribute_values(":e", n(token.expires_at))
            .expression_attribute_values(":ttl", n(token.expires_at / 1000 + 3600))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn drop_token(&self, name: &str, access_token: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("TOKEN#{name}"), TOKEN_SK)))
            .condition_expression("access_token = :t")
            .update_expression("REMOVE access_token, refresh_at, token_expires_at")
            .expression_attribute_values(":t", s(access_token))
            .send()
            .await;
        applied(res).map(drop)
    }

    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("TOKEN#{name}"), TOKEN_SK)))
            .condition_expression("lease_owner = :owner")
            .update_expression("REMOVE lease_owner, lease_until")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        applied(res).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_sent_again_until_nothing_is_left_unprocessed() {
        let calls = AtomicUsize::new(0);
        // 5 items: 3 throttled, then 1, then none.
        let answers = until_processed(5usize, "items", |n| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let left = [3, 1, 0][call];
                Ok((n - left, (left > 0).then_some(left)))
            }
        })
        .await
        .unwrap();
        assert_eq!(answers, [2, 2, 1], "each call's share, all of it taken");
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_still_throttled_after_8_tries_is_an_outage() {
        let started = tokio::time::Instant::now();
        let err = until_processed(1usize, "items", |n| async move { Ok(((), Some(n))) })
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(ref m) if m.contains("items")),
            "{err}"
        );
        // 100 ms doubling: 12.7 s of pauses between the 8 tries.
        assert_eq!(started.elapsed(), Duration::from_millis(12_700));
    }
}
