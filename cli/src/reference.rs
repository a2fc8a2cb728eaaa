//! `hookbridge config reference`: the configuration reference, every key with its type, default,
//! the part that reads it and what it does, generated from the config's JSON Schema (so from the
//! code and its doc comments). `docs/configuration.md` is its output, and a test keeps it so.

use serde_json::Value;

/// The reference as Markdown.
pub fn markdown(schema: &Value) -> String {
    let mut rows = vec![];
    walk(schema, schema, "", false, &mut rows);
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the code by `hookbridge config reference` (a test fails when this file \
         differs from it): every key of `hookbridge.toml`, the part that reads it, its type and \
         default. Secrets are references (`env:NAME`, `secretsmanager:<name>[#key]`, `plain:…`). \
         Editors check the file as you type from `hookbridge config schema` (see docs/configuring.md).\n\n\
         | key | read by | type | default | meaning |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.key, r.part, r.kind, r.default, r.doc
        ));
    }
    out
}

struct Row {
    key: String,
    part: String,
    kind: String,
    default: String,
    doc: String,
}

/// `node` with its `$ref` (or a one-branch `anyOf` with null, as optional fields are) followed.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(r) = node["$ref"].as_str() {
        let name = r.trim_start_matches("#/$defs/");
        return resolve(root, &root["$defs"][name]);
    }
    match node["anyOf"].as_array().map(Vec::as_slice) {
        Some([one, null]) if null["type"] == "null" => resolve(root, one),
        _ => node,
    }
}

/// Adds the rows of `node` at `path`; `required`: its parent cannot do without it.
fn walk(root: &Value, node: &Value, path: &str, required: bool, rows: &mut Vec<Row>) {
    let target = resolve(root, node);
    if let Some(props) = target["properties"].as_object() {
        let needed = target["required"].as_array();
        for (key, prop) in props {
            let is_required = needed.is_some_and(|n| n.iter().any(|k| k == key));
            let key = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(root, prop, &key, is_required, rows);
        }
        return;
    }
    // `type` is a name, or a list of them for an optional value (`["object", "null"]`).
    let is = |t: &str| match &target["type"] {
        Value::String(s) => s == t,
        Value::Array(ts) => ts.iter().any(|x| x == t),
        _ => false,
    };
    let with_keys = |v: &Value| resolve(root, v)["properties"].is_object();
    match (&target["additionalProperties"], &target["items"]) {
        (map @ Value::Object(_), _) if is("object") && with_keys(map) => {
            walk(root, map, &format!("{path}.<name>"), false, rows)
        }
        (_, item) if is("array") && with_keys(item) => {
            walk(root, item, &format!("[[{path}]]"), false, rows)
        }
        _ => rows.push(Row {
            key: path.to_owned(),
            part: node["x-read-by"]
                .as_str()
                .map_or_else(|| part(path), str::to_owned),
            kind: kind(root, node),
            default: node
                .get("default")
                .or_else(|| target.get("default"))
                .map_or_else(
                    || if required { "required" } else { "none" }.to_owned(),
                    |d| format!("`{d}`"),
                ),
            doc: doc(node, target),
        }),
    }
}

/// Which part reads a key: the source or connector whose section it is in, else hookbridge's
/// pipeline.
fn part(path: &str) -> String {
    let mut words = path.trim_start_matches("[[").split('.');
    match (words.next(), words.next()) {
        (Some("sources"), Some(name)) => format!("source {name}"),
        (Some("connectors"), Some(name)) => format!("connector {name}"),
        (Some("recipients"), _) => "routing".into(),
        (Some(top), _) => top.trim_end_matches("]]").to_owned(),
        _ => String::new(),
    }
}

fn kind(root: &Value, node: &Value) -> String {
    let target = resolve(root, node);
    let values: Vec<String> = target["oneOf"]
        .as_array()
        .or_else(|| target["enum"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("const").or(Some(v)).and_then(Value::as_str))
        .map(|v| format!("`{v}`"))
        .collect();
    if !values.is_empty() {
        return values.join(" \\| ");
    }
    if let Some(branches) = target["anyOf"].as_array() {
        let kinds: Vec<String> = branches.iter().map(|b| kind(root, b)).collect();
        return kinds.join(" or ");
    }
    let single = |t: &str| match t {
        "array" => format!("list of {}", kind(root, &target["items"])),
        "object" => "table".to_owned(),
        other => other.to_owned(),
    };
    match &target["type"] {
        Value::String(t) => single(t),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(single)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "secret reference or value".to_owned(),
    }
}

/// The doc comment, on one line, safe in a table cell.
fn doc(node: &Value, target: &Value) -> String {
    let text = node["description"]
        .as_str()
        .or_else(|| target["description"].as_str())
        .unwrap_or("");
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
