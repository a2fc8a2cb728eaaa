//! What `hookbridge check --online` asks the 浙政钉 gateway, read-only: `gettoken.json` (the
//! AppKey and AppSecret, the signature, and whether the app's IP 白名单 holds this address),
//! `listEmployeeAccountIds` for the tenant (whether `tenant_id` is one the app may use) and, with
//! `employee_codes`, whether the mapped employee codes exist. Numeric accountIds have no
//! read-only check: the gateway reports unknown ones in its receipts.

use super::api::{Answer, EMPLOYEES_PATH};
use super::{CONNECTOR, GovDing, account_ids};
use crate::preflight::{Check, Scope};

impl GovDing {
    pub(super) async fn preflight_checks(&self, scope: &Scope) -> Vec<Check> {
        let Some(client) = &self.client else {
            return vec![Check::note(
                CONNECTOR,
                "dry-run (no app_key/app_secret): nothing is sent, nothing to ask",
            )];
        };
        let mut out = vec![];
        if let Err(f) = client.token().await {
            out.push(Check::fail(CONNECTOR, format!("gettoken: {}", f)));
            return out;
        }
        out.push(Check::pass(
            CONNECTOR,
            "gettoken works: the AppKey, AppSecret and signature are right, and the app takes calls from this address",
        ));
        let codes: Vec<&str> = if self.config.employee_codes {
            scope
                .users_to_check()
                .0
                .into_iter()
                .filter(|u| !is_account_id(u))
                .collect()
        } else {
            vec![]
        };
        let probe = ["hookbridge-preflight"];
        let asked: &[&str] = if codes.is_empty() { &probe } else { &codes };
        let mut params = vec![("tenantId", self.tenant_id.as_str())];
        params.extend(asked.iter().take(100).map(|c| ("employeeCodes", *c)));
        let found = match client.post(EMPLOYEES_PATH, &params).await {
            Ok(Answer::Done(content)) => account_ids(&content),
            Ok(Answer::AlreadySent(said)) => {
                out.push(Check::fail(
                    CONNECTOR,
                    format!("tenant {}: {said}", self.tenant_id),
                ));
                return out;
            }
            Err(f) => {
                out.push(Check::fail(
                    CONNECTOR,
                    format!("tenant {}: {}", self.tenant_id, f),
                ));
                return out;
            }
        };
        out.push(Check::pass(
            CONNECTOR,
            format!("tenant {} answers", self.tenant_id),
        ));
        let unknown: Vec<&str> = codes
            .iter()
            .filter(|c| !found.iter().any(|(code, _)| code == *c))
            .copied()
            .collect();
        if !unknown.is_empty() {
            out.push(Check::fail(
                CONNECTOR,
                format!(
                    "employee codes the tenant does not know: {}: fix [recipients.govding.map]",
                    unknown.join(", ")
                ),
            ));
        } else if !codes.is_empty() {
            out.push(Check::pass(
                CONNECTOR,
                format!("{} mapped employee codes exist", codes.len()),
            ));
        }
        out
    }
}

/// accountIds are numbers; anything else is an employee code.
fn is_account_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}
