//! Who a route's recipients are to WeCom (`users_by`): userids as they are, or mobiles and
//! emails looked up once a process (`user/getuserid`, `user/get_userid_by_email`). WeCom stops
//! answering these lookups for a day once the wrong ones pass a fifth of the organisation's
//! size, so one that found nobody is remembered for an hour instead of asked with every send.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::event::Failure;

pub const BY_MOBILE_PATH: &str = "user/getuserid";
pub const BY_EMAIL_PATH: &str = "user/get_userid_by_email";

/// How long a lookup that found nobody is believed.
const NOBODY_FOR: Duration = Duration::from_secs(3600);

/// Codes that say the mobile or email names nobody the app may see (no such member, or not a
/// valid mobile or email); anything else is the lookup failing.
const NOBODY: &[i64] = &[46004, 60111, 60103, 60106];

/// How routes' recipients name people to WeCom.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsersBy {
    /// WeCom userids (账号), sent as they are.
    #[default]
    Userid,
    /// Mobiles in the WeCom directory, looked up with `user/getuserid`.
    Mobile,
    /// Business emails (企业邮箱), looked up with `user/get_userid_by_email`.
    Email,
}

/// The recipients of one send as WeCom knows them.
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    pub userids: Vec<String>,
    /// Names the lookups found nobody for.
    pub unknown: Vec<String>,
}

pub struct Directory {
    by: UsersBy,
    /// Name → userid, or nobody (and when that was found).
    known: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl Directory {
    pub fn new(by: UsersBy) -> Self {
        Directory {
            by,
            known: Mutex::default(),
        }
    }

    /// `users_by` as the config spells it.
    pub fn by(&self) -> &'static str {
        match self.by {
            UsersBy::Userid => "userid",
            UsersBy::Mobile => "mobile",
            UsersBy::Email => "email",
        }
    }

    fn remembered(&self, name: &str) -> Option<Option<String>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match known.get(name)? {
            (Some(id), _) => Some(Some(id.clone())),
            (None, at) if at.elapsed() < NOBODY_FOR => Some(None),
            (None, _) => None,
        }
    }

    /// `names` as userids, asking `lookup` (a call to a path with a body) for those not yet
    /// known. `@all` stays as it is.
    pub async fn resolve<F, Fut>(&self, names: &[String], lookup: F) -> Result<Resolved, Failure>
    where
        F: Fn(&'static str, Value) -> Fut,
        Fut: Future<Output = Result<Value, Failure>>,
    {
        let mut out = Resolved::default();
        for name in names {
            let (path, body) = match self.by {
                _ if name == "@all" => {
                    out.userids.push(name.clone());
                    continue;
                }
                UsersBy::Userid => {
                    out.userids.push(name.clone());
                    continue;
                }
                UsersBy::Mobile => (BY_MOBILE_PATH, json!({ "mobile": name })),
                UsersBy::Email => (BY_EMAIL_PATH, json!({ "email": name, "email_type": 1 })),
            };
            let found = match self.remembered(name) {
                Some(found) => found,
                None => {
                    let found = match lookup(path, body).await {
                        Ok(v) => v["userid"]
                            .as_str()
                            .filter(|u| !u.is_empty())
                            .map(str::to_owned),
                        Err(Failure::Permanent(m))
                            if NOBODY.iter().any(|c| m.contains(&format!("errcode {c}:"))) =>
                        {
                            None
                        }
                        Err(f) => return Err(f),
                    };
                    let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
                    known.insert(name.clone(), (found.clone(), Instant::now()));
                    found
                }
            };
            match found {
                Some(id) => out.userids.push(id),
                None => out.unknown.push(name.clone()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn mobiles_are_looked_up_once_and_nobody_is_remembered_for_an_hour() {
        let dir = Directory::new(UsersBy::Mobile);
        let asked = AtomicUsize::new(0);
        let lookup = |path: &'static str, body: Value| {
            asked.fetch_add(1, Ordering::Relaxed);
            async move {
                assert_eq!(path, BY_MOBILE_PATH);
                match body["mobile"].as_str() {
                    Some("13800000001") => Ok(json!({ "errcode": 0, "userid": "zhangsan" })),
                    _ => Err(Failure::Permanent(
                        "WeCom user/getuserid errcode 46004: user no exist".into(),
                    )),
                }
            }
        };
        let names = [
            "13800000001".to_owned(),
            "139".to_owned(),
            "@all".to_owned(),
        ];
        let want = Resolved {
            userids: vec!["zhangsan".into(), "@all".into()],
            unknown: vec!["139".into()],
        };
        assert_eq!(dir.resolve(&names, lookup).await.unwrap(), want);
        assert_eq!(dir.resolve(&names, lookup).await.unwrap(), want);
        assert_eq!(asked.load(Ordering::Relaxed), 2, "each asked once");
        tokio::time::advance(NOBODY_FOR).await;
        dir.resolve(&names, lookup).await.unwrap();
        assert_eq!(
            asked.load(Ordering::Relaxed),
            3,
            "nobody is asked again after an hour"
        );

        let failing = |_: &'static str, _: Value| async {
            Err(Failure::Transient(
                "WeCom user/getuserid errcode -1: busy".into(),
            ))
        };
        let e = Directory::new(UsersBy::Email)
            .resolve(&names, failing)
            .await;
        assert!(
            matches!(e, Err(Failure::Transient(_))),
            "a failed lookup fails the send"
        );
        let userids = Directory::new(UsersBy::Userid)
            .resolve(&names, failing)
            .await
            .unwrap();
        assert_eq!(userids.userids, names, "userids are not looked up");
    }
}
