//! Forged DMS requests made from a genuinely signed one. Each tries to get content that was not
//! signed past the signature check: wrong JSON types, keys twice, another encoding of
//! `messageEvent`, escapes, trailing data. The HMACs are computed here, independently.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;

use crate::fixture;

/// The signature key of [`genuine`].
pub const KEY: &str = "dms-secret";
/// What every forgery tries to deliver; it must never reach DingTalk or ZenTao.
pub const FORGED: &str = "删库跑路";

pub fn hmac_b64(key: &str, message: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The approval fixture's `messageEvent`, compact.
pub fn event() -> String {
    let v: Value = serde_json::from_str(&fixture("dms-approval-pending.json")).unwrap();
    v["messageEvent"].to_string()
}

fn forged_event() -> String {
    event().replace("订单表历史数据修复", FORGED)
}

fn body(event: &str, method: &str, text: &str) -> String {
    format!(r#"{{"messageEvent":{event},"signatureMethod":{method},"signatureText":{text}}}"#)
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The approval, signed with [`KEY`] over exactly its `messageEvent` bytes.
pub fn genuine() -> String {
    signed(&event())
}

/// A request carrying `event` as its `messageEvent`, signed with [`KEY`] as DMS signs.
pub fn signed(event: &str) -> String {
    body(event, r#""HMAC_SHA1""#, &quoted(&hmac_b64(KEY, event)))
}

/// (what it tries, the body).
pub fn forgeries() -> Vec<(&'static str, String)> {
    let event = event();
    let sig = quoted(&hmac_b64(KEY, &event));
    let forged = forged_event();
    let hmac = r#""HMAC_SHA1""#;
    let inner_last = format!(
        "{},\"taskName\":\"{FORGED}\"}}",
        event.strip_suffix('}').unwrap()
    );
    let inner_first = format!("{{\"taskName\":\"{FORGED}\",{}", &event[1..]);
    vec![
        ("signatureMethod is a number", body(&forged, "1", &sig)),
        (
            "signatureMethod is an array",
            body(&forged, r#"["HMAC_SHA1"]"#, &sig),
        ),
        ("signatureText is a number", body(&forged, hmac, "12345")),
        ("signatureText is null", body(&forged, hmac, "null")),
        ("unsigned", body(&forged, r#""None""#, r#""""#)),
        (
            "messageEvent twice, the forged one last",
            format!(
                r#"{{"messageEvent":{event},"signatureMethod":"HMAC_SHA1","signatureText":{sig},"messageEvent":{forged}}}"#
            ),
        ),
        (
            "messageEvent twice, the forged one first",
            format!(
                r#"{{"messageEvent":{forged},"messageEvent":{event},"signatureMethod":"HMAC_SHA1","signatureText":{sig}}}"#
            ),
        ),
        (
            "a key twice inside messageEvent, forged last",
            body(&inner_last, hmac, &sig),
        ),
        (
            "a key twice inside messageEvent, forged first",
            body(&inner_first, hmac, &sig),
        ),
        (
            "signatureText twice",
            format!(
                r#"{{"messageEvent":{forged},"signatureMethod":"HMAC_SHA1","signatureText":"x","signatureText":{sig}}}"#
            ),
        ),
        (
            "messageEvent as a JSON string",
            body(&quoted(&forged), hmac, &sig),
        ),
        (
            "escaped unicode that changes the signed text",
            body(&event.replace("李四", r"\u674e\u4e94"), hmac, &sig),
        ),
        (
            "a lone surrogate escape",
            body(&event.replace("张三", r"\ud800张三"), hmac, &sig),
        ),
        (
            "trailing data: a second body",
            format!("{}{}", genuine(), body(&forged, hmac, &sig)),
        ),
        ("trailing data: junk", format!("{} x", genuine())),
        (
            "the signed event with its content changed",
            body(&forged, hmac, &sig),
        ),
    ]
}
