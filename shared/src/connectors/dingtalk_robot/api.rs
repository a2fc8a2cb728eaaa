//! The custom robot webhook as hookbridge calls it: 加签 (`timestamp` + HmacSHA256 `sign` in the
//! query) and answers judged by `errcode` (HTTP 200 on failure).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::event::{Failure, Millis};

/// `sign` for `timestamp` (ms): Base64 of HmacSHA256 keyed with the secret over
/// `timestamp + "\n" + secret`; it goes URL-encoded into the query.
pub fn sign(timestamp: Millis, secret: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// The webhook URL with `timestamp` and `sign` added when the robot has a secret.
pub fn signed_url(webhook: &str, secret: Option<&str>, timestamp: Millis) -> String {
    match secret {
        None => webhook.to_owned(),
        Some(secret) => {
            let sign: String =
                form_urlencoded::byte_serialize(sign(timestamp, secret).as_bytes()).collect();
            format!("{webhook}&timestamp={timestamp}&sign={sign}")
        }
    }
}

/// How long DingTalk holds a robot that sent too fast (its throttle lasts 10 minutes).
pub const THROTTLE_WAIT: Millis = 10 * 60 * 1000;

/// Judges a robot's answer by its body: `errcode 0` is success, whatever the HTTP status.
pub fn judge(status: u16, body: &[u8]) -> Result<(), Failure> {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let code = answer.as_ref().and_then(|v| v["errcode"].as_i64());
    let message = answer
        .as_ref()
        .and_then(|v| v["errmsg"].as_str())
        .unwrap_or_default()
        .to_owned();
    let Some(code) = code else {
        return Err(Failure::Transient(format!(
            "the robot webhook answered HTTP {status} without an errcode"
        )));
    };
    let said = format!("robot errcode {code}: {message}");
    match code {
        0 => Ok(()),
        // Too fast: 20 messages a minute, then held for 10 minutes.
        410100 | 660026 | 130101 => Err(Failure::Throttled {
            reason: said,
            wait: THROTTLE_WAIT,
        }),
        -1 => Err(Failure::Transient(said)),
        310000 => Err(Failure::Permanent(format!(
            "{said}{}",
            security_hint(&message)
        ))),
        300005 | 400101 | 400106 => Err(Failure::Permanent(format!(
            "{said} (the robot's access_token is wrong or the robot was removed: check webhook)"
        ))),
        400013 | 400102 => Err(Failure::Permanent(format!(
            "{said} (the group is dissolved or the robot is switched off)"
        ))),
        _ => Err(Failure::Permanent(said)),
    }
}

/// What to change for each of 310000's security checks.
fn security_hint(message: &str) -> &'static str {
    if message.contains("keywords") {
        " (the message lacks the robot's keyword: set keyword in the robot's section)"
    } else if message.contains("sign") || message.contains("timestamp") {
        " (加签 failed: check the robot's secret, and this server's clock)"
    } else if message.contains("whitelist") {
        " (add this server's egress IP to the robot's IP whitelist)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_the_protocols_vector() {
        assert_eq!(
            sign(1_700_000_000_000, "SECtest0123456789"),
            "yBKp5IlG6qCzcQWmgyRK/ziJBdVNJmHfFE2ST/CzT/g="
        );
        assert_eq!(
            signed_url(
                "https://r/robot/send?access_token=t",
                Some("SECtest0123456789"),
                1_700_000_000_000
            ),
            "https://r/robot/send?access_token=t&timestamp=1700000000000&sign=yBKp5IlG6qCzcQWmgyRK%2FziJBdVNJmHfFE2ST%2FCzT%2Fg%3D"
        );
        assert_eq!(
            signed_url("https://r/x?access_token=t", None, 1),
            "https://r/x?access_token=t"
        );
    }

    #[test]
    fn answers_are_judged_by_errcode() {
        assert_eq!(judge(200, br#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        assert!(matches!(
            judge(200, br#"{"errcode":410100,"errmsg":"send too fast"}"#),
            Err(Failure::Throttled {
                wait: THROTTLE_WAIT,
                ..
            })
        ));
        let Err(Failure::Permanent(m)) = judge(
            200,
            br#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
        ) else {
            panic!()
        };
        assert!(m.contains("set keyword"), "{m}");
        assert!(matches!(judge(502, b"<html>"), Err(Failure::Transient(_))));
        assert!(matches!(
            judge(200, br#"{"errcode":-1}"#),
            Err(Failure::Transient(_))
        ));
    }
}
