//! The router against a connector made for the test, so that what is checked is matching,
//! mapping and numbering, not any real connector's layout.

use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::connectors::{BadTarget, Call, Plan, RenderError};
use crate::event::Action;
use crate::notice::{Report, TodoStatus};
use crate::templates::{Builtin, TemplateConfig};

/// One call per user, carrying what it was given; a finish is one status update.
struct Echo {
    markdown: bool,
}

impl Render for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn target(&self, instance: Option<&str>, group: Option<&str>) -> Result<Target, BadTarget> {
        match instance {
            Some(i) => Err(BadTarget(format!("echo has no instance {i}"))),
            None => Ok(Target {
                group: group.map(str::to_owned),
                ..Target::default()
            }),
        }
    }

    fn markdown(&self, _: &Notice, _: &Target) -> bool {
        self.markdown
    }

    fn plan(&self, n: &Notice, t: &Target, users: Vec<String>) -> Result<Plan, RenderError> {
        if n.title == "boom" {
            return Err(RenderError("no room for a boom".into()));
        }
        let body = |to: &[String]| json!({ "title": n.title, "text": n.text, "to": to });
        let calls = match (&n.intent, &t.group) {
            // Bookkeeping comes with no users; a route to people gets a notice like any other.
            (Intent::Receipt { reference, .. }, _) if users.is_empty() => vec![Call {
                action: Action::own("receipt"),
                recipients: vec![],
                message: json!({ "reference": reference }),
            }],
            (Intent::Finish { todo_event, .. }, _) => vec![Call {
                action: Action::own("update_status"),
                recipients: users.clone(),
                message: json!({ "event": todo_event }),
            }],
            (_, Some(g)) => vec![Call {
                action: Action::Send,
                recipients: vec![format!("group:{g}")],
                message: body(&[]),
            }],
            _ => users
                .iter()
                .map(|u| Call {
                    action: Action::Send,
                    recipients: vec![u.clone()],
                    message: body(std::slice::from_ref(u)),
                })
                .collect(),
        };
        Ok(Plan {
            calls,
            unmapped: vec![],
        })
    }
}

#[derive(Deserialize)]
struct Setup {
    routes: Vec<Route>,
    #[serde(default)]
    recipients: BTreeMap<String, RecipientMap>,
    #[serde(default)]
    templates: BTreeMap<String, TemplateConfig>,
}

const BUILTIN: &[(&str, Builtin)] = &[(
    "src",
    Builtin {
        title: "{{ subject }}",
        text: "{{ body }} {{ tag }}",
    },
)];

fn router_with(toml_text: &str, markdown: bool) -> Result<Router, ConfigError> {
    let setup: Setup = toml::from_str(toml_text).unwrap();
    let echo: Arc<dyn Render> = Arc::new(Echo { markdown });
    let templates = Templates::new(BUILTIN, &setup.templates).unwrap();
    Router::new(&setup.routes, setup.recipients, &[echo], templates)
}

fn router(toml_text: &str) -> Router {
    router_with(toml_text, false).unwrap()
}

const ONE_ROUTE: &str = "[[routes]]\nsource = \"src\"\nconnector = \"echo\"\n";

fn parsed(kind: &str, intent: Intent, recipients: &[&str]) -> Parsed {
    let payload = json!({ "subject": "S", "body": "*b*", "team": "ops" });
    let notice = Notice {
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        ..Notice::new("Src", intent, "ev1", 0, payload.clone())
    };
    Parsed {
        event: Event {
            source: "src".into(),
            key: "ev1".into(),
            kind: kind.into(),
            received_at: 0,
            payload,
            raw: String::new(),
        },
        notice: Some(notice),
    }
}

fn message(to: &[&str]) -> Parsed {
    parsed("note", Intent::Message, to)
}

fn finish(by: &[&str]) -> Parsed {
    let intent = Intent::Finish {
        todo_id: "t1".into(),
        todo_event: "EVT#src#t1".into(),
        todo_kind: "task",
        status: TodoStatus::default(),
    };
    parsed("task_done", intent, by)
}

fn summary(plan: &[Delivery]) -> Vec<(String, Status, Vec<String>)> {
    plan.iter()
        .map(|d| (d.sk.clone(), d.status, d.recipients.clone()))
        .collect()
}

#[test]
fn one_delivery_per_call_numbered_in_order() {
    let plan = router(ONE_ROUTE).plan(&message(&["a", "b"]), 5);
    assert_eq!(
        summary(&plan),
        [
            ("DLV#echo#000".into(), Status::Pending, vec!["a".into()]),
            ("DLV#echo#001".into(), Status::Pending, vec!["b".into()]),
        ]
    );
    assert_eq!(plan[0].pk, "EVT#src#ev1");
    assert_eq!(
        plan[0].message["title"], "S",
        "the source's built-in template"
    );
    assert_eq!(plan[0].message["text"], "*b* #ev1");
}

#[test]
fn kinds_and_field_values_select_routes_and_a_finish_follows_its_todo() {
    let r = router(&format!(
        "{ONE_ROUTE}kinds = [\"task\"]\n{ONE_ROUTE}when = {{ team = [\"dev\", \"ops\"] }}\ngroup = \"g\"\n{ONE_ROUTE}when = {{ team = [\"dev\"] }}\nusers = [\"x\"]\n"
    ));
    let recipients = |p: &Parsed| -> Vec<Vec<String>> {
        r.plan(p, 0).iter().map(|d| d.recipients.clone()).collect()
    };
    assert_eq!(recipients(&message(&["a"])), [vec!["group:g".to_owned()]]);
    assert_eq!(
        recipients(&parsed(
            "task",
            Intent::Todo {
                id: "t1".into(),
                status: TodoStatus::default()
            },
            &["a"]
        )),
        [vec!["a".to_owned()], vec!["group:g".to_owned()]]
    );
    let done = r.plan(&finish(&["a"]), 0);
    assert_eq!(done[0].action, Action::own("update_status"));
    assert_eq!(done[0].message["event"], "EVT#src#t1");
}

#[test]
fn routes_with_the_same_target_send_once() {
    let twice = router(&format!("{ONE_ROUTE}{ONE_ROUTE}"));
    assert_eq!(twice.plan(&message(&["a"]), 0).len(), 1);
    let fixed = router(&format!("{ONE_ROUTE}{ONE_ROUTE}users = [\"boss\"]\n"));
    let plan = fixed.plan(&message(&["a"]), 0);
    assert_eq!(
        summary(&plan),
        [
            ("DLV#echo#000".into(), Status::Pending, vec!["a".into()]),
            ("DLV#echo#001".into(), Status::Pending, vec!["boss".into()]),
        ],
        "numbered across routes"
    );
}

#[test]
fn recipients_are_mapped_and_the_unmapped_reported() {
    let map = "[recipients.echo]\nmode = \"require\"\nmap = { a = \"A\", b = \"A\" }\n";
    let plan = router(&format!("{ONE_ROUTE}{map}")).plan(&message(&["a", "b", "c"]), 0);
    assert_eq!(
        summary(&plan),
        [
            ("DLV#echo#000".into(), Status::Pending, vec!["A".into()]),
            ("DLV#echo#001".into(), Status::Skipped, vec!["c".into()]),
        ],
        "a and b are one user; c has no mapping"
    );
    assert_eq!(
        plan[1].last_error.as_deref(),
        Some("no recipient for c: add them to [recipients.echo.map]")
    );

    let passthrough = router(ONE_ROUTE).plan(&message(&["c"]), 0);
    assert_eq!(summary(&passthrough)[0].2, ["c"]);
    let mut foreign = message(&["c"]);
    foreign.notice.as_mut().unwrap().foreign_ids = true;
    assert_eq!(
        summary(&router(ONE_ROUTE).plan(&foreign, 0)),
        [("DLV#echo#000".into(), Status::Skipped, vec!["c".into()])],
        "ids that are never the connector's are not passed through"
    );
}

#[test]
fn groups_take_no_users_and_nobody_means_nothing_to_send() {
    let group = router(&format!("{ONE_ROUTE}group = \"g\"\n"));
    assert_eq!(group.plan(&message(&[]), 0).len(), 1);
    assert!(router(ONE_ROUTE).plan(&message(&[]), 0).is_empty());
    let mut quiet = message(&["a"]);
    quiet.notice = None;
    assert!(router(ONE_ROUTE).plan(&quiet, 0).is_empty());
}

#[test]
fn a_finish_names_whose_card_is_done_and_reports_nobody() {
    let require = "[recipients.echo]\nmode = \"require\"\nmap = { a = \"A\" }\n";
    let r = router(&format!("{ONE_ROUTE}users = [\"boss\"]\n{require}"));
    let plan = r.plan(&finish(&["a"]), 0);
    assert_eq!(
        summary(&plan)[0].2,
        ["A"],
        "the finisher, not the fixed users"
    );
    let plan = r.plan(&finish(&["stranger"]), 0);
    assert_eq!(summary(&plan).len(), 1, "no report for a finish");
    assert!(plan[0].recipients.is_empty());
}

#[test]
fn templates_escape_values_for_markdown_connectors() {
    let own = "[templates.mine]\ntitle = \"[{{ subject }}]\"\ntext = \"**{{ body }}**\"\n";
    let text = router(&format!("{ONE_ROUTE}template = \"mine\"\n{own}"));
    assert_eq!(text.plan(&message(&["a"]), 0)[0].message["text"], "***b***");
    let md = router_with(&format!("{ONE_ROUTE}template = \"mine\"\n{own}"), true).unwrap();
    let plan = md.plan(&message(&["a"]), 0);
    assert_eq!(plan[0].message["title"], "[S]");
    assert_eq!(plan[0].message["text"], r"**\*b\***");
}

#[test]
fn a_request_that_cannot_render_is_stored_dead_not_dropped() {
    let mut p = message(&["a"]);
    p.event.payload["subject"] = json!("boom");
    p.notice.as_mut().unwrap().fields["subject"] = json!("boom");
    let plan = router(ONE_ROUTE).plan(&p, 0);
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].status, Status::Dead);
    assert!(
        plan[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("could not render the request: no room for a boom")
    );
}

#[test]
fn bad_routes_say_which_and_why() {
    let err = |t: &str| router_with(t, false).err().unwrap().to_string();
    let e = err(&ONE_ROUTE.replace("echo", "nowhere"));
    assert!(e.contains("routes[0]: no connector \"nowhere\""), "{e}");
    let e = err(&format!("{ONE_ROUTE}instance = \"x\"\n"));
    assert!(e.contains("routes[0]: echo has no instance x"), "{e}");
    let e = err(&format!("{ONE_ROUTE}template = \"nope\"\n"));
    assert!(e.contains("template \"nope\" is not defined"), "{e}");
    let e = err(&format!("{ONE_ROUTE}language = \"en\"\n"));
    assert!(
        e.contains("routes[0]: source \"src\" has no English built-in template"),
        "{e}"
    );
    let e = err(&format!("{ONE_ROUTE}to_all_user = true\n"));
    assert!(
        e.contains("routes[0]: unknown field `to_all_user`, there are no fields (a echo route"),
        "only the connector that reads an option takes it: {e}"
    );
    let e = err(&format!("{ONE_ROUTE}kind = [\"todo\"]\n"));
    assert!(
        e.contains("unknown field `kind`"),
        "a misspelt shared key is named: {e}"
    );
}

#[test]
fn a_receipt_goes_back_to_its_connector_and_to_routes_that_name_it() {
    let receipt = |connector| {
        let mut p = parsed(
            "read",
            Intent::Receipt {
                connector,
                reference: "biz-1".into(),
                report: Report::default(),
            },
            &[],
        );
        p.notice.as_mut().unwrap().quiet = true;
        p
    };
    let r = router(&format!("{ONE_ROUTE}users = [\"ops\"]\n"));
    let plan = r.plan(&receipt("echo"), 0);
    assert_eq!(
        plan.len(),
        1,
        "the route names no kinds, so only the bookkeeping"
    );
    assert_eq!(
        (plan[0].action.clone(), &plan[0].message["reference"]),
        (Action::own("receipt"), &json!("biz-1"))
    );
    assert!(
        r.plan(&receipt("elsewhere"), 0).is_empty(),
        "not sent from here"
    );
    let asked = router(&format!(
        "{ONE_ROUTE}users = [\"ops\"]\nkinds = [\"read\"]\n"
    ));
    let plan = asked.plan(&receipt("echo"), 0);
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert_eq!(plan[1].recipients, ["ops"]);
}

/// Matchers select routes as Alertmanager's do, together with `when`.
#[test]
fn matchers_select_routes() {
    let r = router(&format!(
        "{ONE_ROUTE}matchers = [\"team=~\\\"d.v|ops\\\"\", \"subject!=\\\"quiet\\\"\"]\nusers = [\"m\"]\n\
         {ONE_ROUTE}matchers = [\"team!~\\\"dev\\\"\"]\nusers = [\"n\"]\n"
    ));
    let to = |p: &Parsed| -> Vec<Vec<String>> {
        r.plan(p, 0).iter().map(|d| d.recipients.clone()).collect()
    };
    // The payload's team is "ops", its subject "S".
    assert_eq!(
        to(&message(&["a"])),
        [vec!["m".to_owned()], vec!["n".to_owned()]]
    );
    let mut dev = message(&["a"]);
    dev.event.payload["team"] = json!("dev");
    assert_eq!(to(&dev), [vec!["m".to_owned()]]);
    let mut quiet = message(&["a"]);
    quiet.event.payload["subject"] = json!("quiet");
    assert_eq!(to(&quiet), [vec!["n".to_owned()]]);
}
