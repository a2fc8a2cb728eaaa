//! Message templates (minijinja): a `title` and a `text` per template, rendered with the event's
//! fields by name. Each source has a built-in template named after it (its file's `TEMPLATE`);
//! `[templates.<name>]` in the config adds more, and a route picks one with `template = "<name>"`.
//!
//! When the output is Markdown, the event's values are escaped before rendering, so text from
//! a source cannot turn into headings, links or emphasis; the template's own text is not.

use std::collections::BTreeMap;

use minijinja::Environment;
use serde::Deserialize;
use serde_json::Value;

use crate::notice::{Language, MsgType};

/// A source's built-in template: what it sends unless a route picks another.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub title: &'static str,
    pub text: &'static str,
}

/// A template that does not compile or render: which one, which part, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("templates.{name}.{part}: {reason}")]
pub struct TemplateError {
    pub name: String,
    pub part: &'static str,
    pub reason: String,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// The message's title, a minijinja template over the event's fields.
    pub title: String,
    /// The message's text (Markdown where the connector shows Markdown), a minijinja template.
    pub text: String,
    /// How DingTalk shows it: `text`, `markdown`, `link`, `action_card` or `oa`. Absent: an
    /// OA card for a to-do with a link, else `connectors.dingtalk.notice_format`.
    pub msgtype: Option<MsgType>,
    /// Buttons of an `action_card` (one: the whole card links; several: a list). Both parts
    /// are templates.
    #[serde(default)]
    pub buttons: Vec<ButtonConfig>,
    /// The picture of a `link` message (a URL or a `media_id`), a template.
    pub image: Option<String>,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonConfig {
    /// The button's text, a template.
    pub title: String,
    /// Where the button leads, a template.
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub text: String,
    /// `(title, url)` per button, those that rendered empty left out.
    pub buttons: Vec<(String, String)>,
    /// `None` when absent or rendered empty.
    pub image: Option<String>,
}

pub struct Templates {
    env: Environment<'static>,
    /// Per template: the shape it asks for and how many buttons it has.
    shapes: BTreeMap<String, (Option<MsgType>, usize)>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles the sources' built-ins (by source name) and the config's templates; an error
    /// names the template, the part and the line.
    pub fn new(
        builtins: &[(&str, Builtin)],
        user: &BTreeMap<String, TemplateConfig>,
    ) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        // Missing fields render empty: sources leave out what they do not know.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        let builtin = builtins.iter().map(|(n, b)| {
            let t = TemplateConfig {
                title: b.title.to_owned(),
                text: b.text.to_owned(),
                ..TemplateConfig::default()
            };
            ((*n).to_owned(), t)
        });
        let user = user.iter().map(|(n, t)| (n.clone(), t.clone()));
        let mut shapes = BTreeMap::new();
        for (name, t) in builtin.chain(user) {
            let mut parts = vec![
                ("title", format!("{name}.title"), t.title),
                ("text", format!("{name}.text"), t.text),
            ];
            parts.extend(t.image.map(|i| ("image", format!("{name}.image"), i)));
            for (b, button) in t.buttons.iter().enumerate() {
                parts.push((
                    "buttons",
                    format!("{name}.button{b}.title"),
                    button.title.clone(),
                ));
                parts.push((
                    "buttons",
                    format!("{name}.button{b}.url"),
                    button.url.clone(),
                ));
            }
            for (part, key, source) in parts {
                env.add_template_owned(key, source)
                    .map_err(|e| TemplateError {
                        name: name.clone(),
                        part,
                        reason: describe(&e),
                    })?;
            }
            shapes.insert(name, (t.msgtype, t.buttons.len()));
        }
        Ok(Templates { env, shapes })
    }

    /// The template a route uses: its own `template`, else its source's built-in in its
    /// language; an error says what to change.
    pub fn for_route(
        &self,
        template: Option<&str>,
        source: &str,
        language: Language,
    ) -> Result<String, String> {
        match (template, language) {
            (Some(t), _) if !self.contains(t) => Err(format!(
                "template {t:?} is not defined (add [templates.{t}])"
            )),
            (Some(t), _) => Ok(t.to_owned()),
            (None, Language::Zh) => Ok(source.to_owned()),
            (None, Language::En) => {
                let en = format!("{source}.en");
                match self.contains(&en) {
                    true => Ok(en),
                    false => Err(format!(
                        "source {source:?} has no English built-in template: give the route \
                         its own `template` ([templates.<name>])"
                    )),
                }
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    /// The shape template `name` asks for, if it names one.
    pub fn msgtype(&self, name: &str) -> Option<MsgType> {
        self.shapes.get(name).and_then(|(m, _)| *m)
    }

    /// Renders template `name` with `context` (a JSON object of the event's fields).
    pub fn render(
        &self,
        name: &str,
        context: &Value,
        markdown: bool,
    ) -> Result<Rendered, TemplateError> {
        let escaped;
        // Links and pictures are URLs, never Markdown: they see the values as they are.
        let raw = context;
        let context = if markdown {
            escaped = escape_strings(context);
            &escaped
        } else {
            context
        };
        let render_with = |context: &Value, key: String, part: &'static str| {
            self.env
                .get_template(&key)
                .and_then(|t| t.render(minijinja::value::Serde(context)))
                .map(|s| s.trim().to_owned())
                .map_err(|e| TemplateError {
                    name: name.to_owned(),
                    part,
                    reason: describe(&e),
                })
        };
        let part = |part: &'static str| render_with(context, format!("{name}.{part}"), part);
        let image = match self.env.get_template(&format!("{name}.image")) {
            Ok(_) => {
                Some(render_with(raw, format!("{name}.image"), "image")?).filter(|i| !i.is_empty())
            }
            Err(_) => None,
        };
        let mut buttons = vec![];
        for b in 0..self.shapes.get(name).map_or(0, |(_, n)| *n) {
            let title = render_with(context, format!("{name}.button{b}.title"), "buttons")?;
            let url = render_with(raw, format!("{name}.button{b}.url"), "buttons")?;
            if !title.is_empty() && !url.is_empty() {
                buttons.push((title, url));
            }
        }
        Ok(Rendered {
            title: part("title")?,
            text: part("text")?,
            buttons,
            image,
        })
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{e} (line {line})"),
        None => e.to_string(),
    }
}

/// Every string in `v` with the characters that carry meaning in Markdown backslash-escaped.
fn escape_strings(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(escape_markdown(s)),
        Value::Array(items) => Value::Array(items.iter().map(escape_strings).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), escape_strings(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '>' | '!' | '|' | '~' | '<'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn templates(extra: &[(&str, &str, &str)]) -> Templates {
        let user = extra
            .iter()
            .map(|(n, t, x)| {
                (
                    (*n).to_owned(),
                    TemplateConfig {
                        title: (*t).to_owned(),
                        text: (*x).to_owned(),
                        ..TemplateConfig::default()
                    },
                )
            })
            .collect();
        Templates::new(&crate::registry::builtins(), &user).unwrap()
    }

    #[test]
    fn built_ins_render_chinese_and_tolerate_missing_fields() {
        let t = templates(&[]);
        let hap = t
            .render(
                "hap",
                &json!({"label": "待办", "appName": "采购管理", "message": "请审批"}),
                false,
            )
            .unwrap();
        assert_eq!(
            hap,
            Rendered {
                title: "待办｜采购管理".into(),
                text: "请审批".into(),
                ..Rendered::default()
            }
        );
        let bare = t
            .render("hap", &json!({"label": "系统消息"}), false)
            .unwrap();
        assert_eq!(
            bare,
            Rendered {
                title: "系统消息".into(),
                text: String::new(),
                ..Rendered::default()
            }
        );
        let dms = t
            .render(
                "dms",
                &json!({"module": "数据变更", "event": "待审批", "message": " 工单 4829103 "}),
                false,
            )
            .unwrap();
        assert_eq!(
            dms,
            Rendered {
                title: "【DMS】数据变更待审批".into(),
                text: "工单 4829103".into(),
                ..Rendered::default()
            }
        );
    }

    #[test]
    fn user_templates_use_fields_by_name_and_missing_ones_are_empty() {
        let t = templates(&[(
            "ops",
            "{{ appName }} 有新{{ label }}",
            "{{ message }}（{{ nothere.deeper }}）{{ targets | length }} 人",
        )]);
        let r = t.render("ops", &json!({"appName": "合同", "label": "待办", "message": "续签", "targets": ["a", "b"]}), false).unwrap();
        assert_eq!(
            r,
            Rendered {
                title: "合同 有新待办".into(),
                text: "续签（）2 人".into(),
                ..Rendered::default()
            }
        );
        assert!(t.contains("ops") && t.contains("hap") && !t.contains("nope"));
    }

    #[test]
    fn markdown_output_escapes_the_values_not_the_template() {
        let t = templates(&[("md", "{{ title }}", "**{{ message }}** [link]({{ url }})")]);
        let ctx =
            json!({"title": "*t*", "message": "# 不是标题 [x](y) a_b", "url": "https://h/p_(1)"});
        let r = t.render("md", &ctx, true).unwrap();
        assert_eq!(
            r.text,
            r"**\# 不是标题 \[x\]\(y\) a\_b** [link](https://h/p\_\(1\))"
        );
        let plain = t.render("md", &ctx, false).unwrap();
        assert_eq!(
            plain.text,
            "**# 不是标题 [x](y) a_b** [link](https://h/p_(1))"
        );
    }

    #[test]
    fn syntax_errors_name_the_template_and_line() {
        let user = [(
            "broken".to_owned(),
            TemplateConfig {
                title: "ok".into(),
                text: "line one\n{{ message ".into(),
                ..TemplateConfig::default()
            },
        )]
        .into();
        let err = Templates::new(&[], &user).unwrap_err().to_string();
        assert!(err.starts_with("templates.broken.text:"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
