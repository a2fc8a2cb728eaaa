//! Routes from the config decide which connectors an event's notice goes to. This module only
//! matches routes, maps recipients, renders the route's template and numbers the deliveries;
//! each connector's [`Render`] turns the notice into its requests. Pure: the same input always
//! gives the same bytes, so a retried send is an exact resend.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use tracing::{error, info, warn};

use crate::config::{ConfigError, MapMode, RecipientMap, Route};
use crate::connectors::{Render, Target};
use crate::event::{Delivery, Event, Millis, Status, delivery_sk};
use crate::logging::LogId;
use crate::notice::{Intent, Notice};
use crate::sources::Parsed;
use crate::templates::{Rendered, Templates};

/// A route with the connector and target it resolved to.
#[derive(Clone)]
struct Resolved {
    route: Route,
    render: Arc<dyn Render>,
    target: Target,
    /// The route's template, else its source's built-in in the route's language.
    template: String,
}

#[derive(Clone)]
pub struct Router {
    routes: Vec<Resolved>,
    /// Every configured connector, routed or not (receipts go back to the one that sent).
    renderers: Vec<Arc<dyn Render>>,
    recipients: BTreeMap<String, RecipientMap>,
    templates: Arc<Templates>,
}

impl Router {
    /// Resolves every route to one of `renderers` (the configured connectors) and checks its
    /// target and template: an error names the route and what to change.
    pub fn new(
        routes: &[Route],
        recipients: BTreeMap<String, RecipientMap>,
        renderers: &[Arc<dyn Render>],
        templates: Templates,
    ) -> Result<Self, ConfigError> {
        let mut resolved = vec![];
        for (i, route) in routes.iter().enumerate() {
            let invalid = |m: String| ConfigError::Invalid(format!("routes[{i}]: {m}"));
            let render = renderers
                .iter()
                .find(|r| r.name() == route.connector)
                .ok_or_else(|| invalid(format!("no connector \"{}\" here", route.connector)))?;
            let target = render
                .target(route.instance.as_deref(), route.group.as_deref())
                .and_then(|t| render.route_options(&route.options, t))
                .map_err(|e| invalid(e.to_string()))?;
            let template = templates
                .for_route(route.template.as_deref(), &route.source, route.language)
                .map_err(invalid)?;
            resolved.push(Resolved {
                route: route.clone(),
                render: render.clone(),
                target,
                template,
            });
        }
        Ok(Router {
            routes: resolved,
            renderers: renderers.to_vec(),
            recipients,
            templates: Arc::new(templates),
        })
    }

    /// The deliveries for one event, numbered per connector across its routes.
    pub fn plan(&self, parsed: &Parsed, now: Millis) -> Vec<Delivery> {
        let Some(notice) = &parsed.notice else {
            return vec![];
        };
        let pk = parsed.event.pk();
        let mut out = self.receipt(notice, &pk, now);
        let routes = self.matching(&parsed.event, notice);
        if routes.is_empty() {
            info!(kind = %parsed.event.kind, "no route takes this event: stored, nothing sent");
        }
        out.extend(
            routes
                .into_iter()
                .flat_map(|r| self.deliveries(r, &parsed.event, notice, &pk, now)),
        );
        let mut next: BTreeMap<String, usize> = BTreeMap::new();
        for d in &mut out {
            let n = next.entry(d.connector.clone()).or_default();
            d.sk = delivery_sk(&d.connector, *n);
            *n += 1;
        }
        out
    }

    /// Every route that takes the event, except that of routes with the same target (connector,
    /// instance, group, fixed users) only the first does: an overlap in the config cannot send
    /// the same message twice. A finish takes the routes of the to-do it finishes; a quiet
    /// notice only routes that name its kind.
    fn matching(&self, event: &Event, notice: &Notice) -> Vec<&Resolved> {
        let mut chosen: Vec<&Resolved> = vec![];
        for r in &self.routes {
            let route = &r.route;
            let kind_matches = match &route.kinds {
                None => !notice.quiet,
                Some(kinds) => kinds.iter().any(|k| {
                    *k == event.kind
                        || matches!(&notice.intent, Intent::Finish { todo_kind, .. } if k == todo_kind)
                }),
            };
            let when_matches = route.takes(&event.payload);
            let same_target = |c: &&Resolved| {
                c.route.connector == route.connector
                    && c.target == r.target
                    && c.route.users == route.users
            };
            if route.source == event.source
                && kind_matches
                && when_matches
                && !chosen.iter().any(same_target)
            {
                chosen.push(r);
            }
        }
        chosen
    }

    /// One route's deliveries: the connector's calls, then the report of who had no mapping.
    fn deliveries(
        &self,
        r: &Resolved,
        event: &Event,
        notice: &Notice,
        pk: &str,
        now: Millis,
    ) -> Vec<Delivery> {
        let connector = r.render.name();
        let finish = matches!(notice.intent, Intent::Finish { .. });
        let (users, mut unmapped) = match &r.route.users {
            // A finish names whose card is done; nobody is sent anything, so nobody is reported.
            _ if finish => (self.map_users(connector, notice).0, vec![]),
            _ if !r.target.is_users() && !r.target.mentions => (vec![], vec![]),
            Some(fixed) => (fixed.clone(), vec![]),
            None => self.map_users(connector, notice),
        };
        let mut out = vec![];
        if users.is_empty() && r.target.is_users() && !finish {
            warn!(connector, "no recipients; stored without deliveries");
        } else {
            let mut notice = notice.clone();
            if r.target.revoke_on_finish {
                notice.intent = notice.intent.revoked();
            }
            notice.intent = notice.intent.in_language(r.route.language);
            notice.language = r.route.language;
            if !finish {
                let template = r.template.as_str();
                notice.msgtype = self.templates.msgtype(template);
                let markdown = r.render.markdown(&notice, &r.target);
                let rendered = self.render(template, &event.source, &notice.fields, markdown);
                (notice.title, notice.text) = (rendered.title, rendered.text);
                (notice.buttons, notice.image) = (rendered.buttons, rendered.image);
            }
            let (calls, more) = planned(r.render.as_ref(), &notice, &r.target, users, pk, now);
            out.extend(calls);
            unmapped.extend(more);
        }
        if !unmapped.is_empty() {
            let reason = format!(
                "no {} for {}: add them to [recipients.{connector}.map]",
                r.render.recipient_noun(),
                unmapped.join(", ")
            );
            out.push(Delivery::unsent(
                pk,
                connector,
                Status::Skipped,
                unmapped,
                reason,
                now,
            ));
        }
        out
    }

    /// A receipt or change goes back to the connector it is for, if that connector is
    /// configured here (else the message cannot have been ours, nor the cache).
    fn receipt(&self, notice: &Notice, pk: &str, now: Millis) -> Vec<Delivery> {
        let (Intent::Receipt { connector, .. } | Intent::Changed { connector, .. }) =
            &notice.intent
        else {
            return vec![];
        };
        match self.renderers.iter().find(|r| r.name() == *connector) {
            Some(render) => planned(render.as_ref(), notice, &Target::default(), vec![], pk, now).0,
            None => vec![],
        }
    }

    /// The route's template (or the source's built-in one) rendered with the notice's fields.
    fn render(&self, name: &str, source: &str, fields: &Value, markdown: bool) -> Rendered {
        self.templates
            .render(name, fields, markdown)
            .unwrap_or_else(|e| {
                warn!(error = %e, "template failed; using the built-in one");
                self.templates
                    .render(source, fields, markdown)
                    .unwrap_or(Rendered {
                        title: source.to_owned(),
                        ..Rendered::default()
                    })
            })
    }

    /// Maps the notice's recipients to `connector`'s: `(mapped, unmapped)`. Unmapped ids are
    /// passed through unless the map's mode is `require` or the ids can never be the
    /// connector's ([`Notice::foreign_ids`]).
    fn map_users(&self, connector: &str, notice: &Notice) -> (Vec<String>, Vec<String>) {
        let ids = &notice.recipients;
        let map = self.recipients.get(connector);
        let require = notice.foreign_ids || map.is_some_and(|m| m.mode == MapMode::Require);
        let (mut out, mut unmapped) = (vec![], vec![]);
        let mut seen = HashSet::with_capacity(ids.len());
        let own: HashSet<&str> = notice.own_accounts.iter().map(String::as_str).collect();
        let mut guid_like = 0usize;
        for id in ids {
            let mapped = match map.and_then(|m| m.map.get(id)) {
                Some(m) => m.clone(),
                None if require => {
                    unmapped.push(id.clone());
                    continue;
                }
                None => {
                    guid_like += usize::from(own.contains(id.as_str()));
                    id.clone()
                }
            };
            if seen.insert(mapped.clone()) {
                out.push(mapped);
            }
        }
        // One line per event, not one per recipient: 25,000 targets must not be 25,000 lines.
        if let Some(first) = unmapped.first() {
            warn!(connector, count = unmapped.len(), first = %LogId(first), "no recipient mapping; not sent to these users");
        }
        if guid_like > 0 {
            warn!(
                connector,
                count = guid_like,
                "unmapped ids look like {} account ids, which {connector} will not know; add them to [recipients.{connector}.map]",
                notice.from
            );
        }
        (out, unmapped)
    }
}

/// The connector's calls for `notice` as deliveries, and the users it could not address; a
/// request that cannot be rendered is stored dead, to be seen, never dropped.
fn planned(
    render: &dyn Render,
    notice: &Notice,
    target: &Target,
    users: Vec<String>,
    pk: &str,
    now: Millis,
) -> (Vec<Delivery>, Vec<String>) {
    let connector = render.name();
    if let Intent::Revoke { of } = &notice.intent {
        return (
            vec![Delivery::revoke(pk, connector, of, users, now)],
            vec![],
        );
    }
    match render.plan(notice, target, users) {
        Ok(plan) => (
            plan.calls
                .into_iter()
                .map(|c| Delivery::new(pk, connector, 0, c.action, c.recipients, c.message, now))
                .collect(),
            plan.unmapped,
        ),
        Err(e) => {
            error!(connector, error = %e, "could not render the request");
            let reason = format!("could not render the request: {e}");
            let dead = Delivery::unsent(pk, connector, Status::Dead, vec![], reason, now);
            (vec![dead], vec![])
        }
    }
}

#[cfg(test)]
mod tests;
