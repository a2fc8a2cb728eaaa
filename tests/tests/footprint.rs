//! What adding a source or a connector touches, measured on every one that exists by the paths
//! the compiler reads: the files outside the part's own room that refer to it in code. A new
//! part touches the same files; if a list grows, a seam has leaked (the hall learned a name).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Source files under `dir`, without build output and without tests (tests may name anything).
fn code_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | "tests" | ".git" | ".cache" | ".aws-sam" | "node_modules"
            ) {
                code_files(&path, out);
            }
        } else if name.ends_with(".rs") || name == "Cargo.toml" || name == "template.yaml" {
            out.push(path);
        }
    }
}

/// The files that refer to `name`, a part of `kind` (`sources` or `connectors`), outside its
/// own file or folder: a Rust path naming it, its `mod` line in its kind's `mod.rs`, the
/// function folder whose crate it is, the SAM template's function.
fn footprint(kind: &str, name: &str, function: &str) -> BTreeSet<String> {
    let root = repo();
    // One system's source and connector (浙政钉's) are one room: its tools use both.
    let other = if kind == "sources" {
        "connectors"
    } else {
        "sources"
    };
    let sibling = parts().iter().any(|(k, n, _)| *k == other && *n == name);
    let mut own = vec![
        root.join(format!("shared/src/{kind}/{name}.rs")),
        root.join(format!("shared/src/{kind}/{name}")),
    ];
    if sibling {
        own.push(root.join(format!("shared/src/{other}/{name}.rs")));
        own.push(root.join(format!("shared/src/{other}/{name}")));
    }
    let function_dir = root.join("functions").join(function);
    let mut files = vec![];
    code_files(&root, &mut files);
    let mut touched = BTreeSet::new();
    for path in files {
        if own.iter().any(|o| path.starts_with(o)) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let refers = match path.extension().and_then(|e| e.to_str()) {
            Some("rs") => names_part(&root, &path, &text, kind, name),
            _ => text.contains(function),
        };
        if refers {
            let shown = if path.starts_with(&function_dir) {
                format!("functions/{function}/")
            } else {
                path.strip_prefix(&root).unwrap().display().to_string()
            };
            touched.insert(shown);
        }
    }
    println!("{kind}::{name} touches {touched:#?}");
    touched
}

/// What a Rust file refers to, as the compiler reads it: every path (expressions, types,
/// patterns, macros' paths) and import (grouped ones included, `use crate::sources::{dms,
/// hap}`), with `self`, `super` and `crate` resolved from the file's module; and the modules it
/// declares.
struct Paths {
    module: Vec<String>,
    /// `(resolved from the crate, segments)`: paths not starting with `crate`, `hookbridge`,
    /// `self` or `super` are kept as written.
    found: Vec<(bool, Vec<String>)>,
    mods: Vec<String>,
    /// Leave out `#[cfg(test)]` modules (tests may use anything).
    skip_tests: bool,
}

impl Paths {
    /// Reads the file at `path` (its module from its place under `shared/src`).
    fn of(root: &Path, path: &Path, text: &str, skip_tests: bool) -> Paths {
        use syn::visit::Visit;
        let module: Vec<String> = path
            .strip_prefix(root.join("shared/src"))
            .map(|rel| {
                let mut parts: Vec<String> = rel
                    .with_extension("")
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                    parts.pop();
                }
                parts
            })
            .unwrap_or_default();
        let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut paths = Paths {
            module,
            found: vec![],
            mods: vec![],
            skip_tests,
        };
        paths.visit_file(&file);
        paths
    }

    /// `segments` from the crate root: `crate`, `hookbridge`, `self` and `super` resolved.
    fn absolute(&self, segments: Vec<String>) -> (bool, Vec<String>) {
        let mut out = self.module.clone();
        let mut rest = segments.into_iter().peekable();
        match rest.peek().map(String::as_str) {
            Some("crate" | "hookbridge") => {
                out.clear();
                rest.next();
            }
            Some("self" | "super") => {}
            _ => return (false, rest.collect()),
        }
        for s in rest {
            match s.as_str() {
                "self" => {}
                "super" => {
                    out.pop();
                }
                _ => out.push(s),
            }
        }
        (true, out)
    }

    fn tree(&mut self, prefix: Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                let mut next = prefix;
                next.push(p.ident.to_string());
                self.tree(next, &p.tree);
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix;
                full.push(n.ident.to_string());
                self.found.push(self.absolute(full));
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix;
                full.push(r.ident.to_string());
                self.found.push(self.absolute(full));
            }
            syn::UseTree::Glob(_) => self.found.push(self.absolute(prefix)),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(prefix.clone(), t);
                }
            }
        }
    }
}

impl<'ast> syn::visit::Visit<'ast> for Paths {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let full = self.absolute(segments);
        self.found.push(full);
        syn::visit::visit_path(self, p);
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(vec![], &u.tree);
    }
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        });
        if self.skip_tests && test {
            return;
        }
        self.mods.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
    }
}

/// Whether the Rust file at `path` names the part `kind::name` the way the compiler reads it,
/// or declares it (`mod name;` in its kind's `mod.rs`).
fn names_part(root: &Path, path: &Path, text: &str, kind: &str, name: &str) -> bool {
    let paths = Paths::of(root, path, text, false);
    let declares = path == root.join(format!("shared/src/{kind}/mod.rs"))
        && paths.mods.iter().any(|m| m == name);
    declares
        || paths
            .found
            .iter()
            .any(|(_, p)| p.windows(2).any(|w| w[0] == kind && w[1] == name))
}

/// The reader catches what a grep for one spelling missed.
#[test]
fn grouped_and_relative_imports_count() {
    let root = repo();
    let file = root.join("shared/src/sources/hap.rs");
    for (text, found) in [
        ("use crate::sources::{dms, hap};", true),
        ("use super::dms::PATH;", true),
        ("use hookbridge::sources::dms as d;", true),
        ("fn f() { let _ = crate::sources::dms::PATH; }", true),
        ("use crate::sources::hap;", false),
        ("// sources::dms in a comment\nfn f() {}", false),
    ] {
        assert_eq!(
            names_part(&root, &file, text, "sources", "dms"),
            found,
            "{text}"
        );
    }
}

fn set(files: &[&str]) -> BTreeSet<String> {
    files.iter().map(|f| (*f).to_owned()).collect()
}

/// `registry.rs` names a part in two lines: its `use` and its registry entry.
fn registry_lines(name: &str) -> usize {
    std::fs::read_to_string(repo().join("shared/src/registry.rs"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("::{name}::")) || l.trim().starts_with(&format!("{name}:")))
        .count()
}

/// Every registered part: `(kind, name, function crate)`, the crate named by convention
/// (`<name>-webhook`, `<name>-sender`), so a new part is checked from its registry line on.
fn parts() -> Vec<(&'static str, &'static str, String)> {
    let sources = hookbridge::registry::TEMPLATES
        .iter()
        .map(|(name, _)| ("sources", *name, format!("{name}-webhook")));
    let connectors = hookbridge::registry::CONNECTORS.iter().map(|(name, _)| {
        (
            "connectors",
            *name,
            format!("{}-sender", name.replace('_', "-")),
        )
    });
    sources.chain(connectors).collect()
}

/// The hall — ingress, routing, the sender loop, the store, the event and notice model, the
/// config, metrics, the Lambda and local wiring — names no part: a new one changes none of it.
#[test]
fn the_hall_names_no_part() {
    let root = repo();
    let mut hall = vec![];
    for file in [
        "routing.rs",
        "ingress.rs",
        "delivery.rs",
        "config.rs",
        "event.rs",
        "notice.rs",
        "metrics.rs",
        "lambda.rs",
        "local.rs",
        "app.rs",
        "templates.rs",
        "operator.rs",
        "revoke.rs",
    ] {
        hall.push(root.join("shared/src").join(file));
    }
    code_files(&root.join("shared/src/store"), &mut hall);
    for path in &hall {
        let text = std::fs::read_to_string(path).unwrap();
        for (kind, name, _) in parts() {
            assert!(
                !names_part(&root, path, &text, kind, name),
                "{} refers to {kind}::{name}",
                path.display()
            );
        }
    }
    let routing = std::fs::read_to_string(root.join("shared/src/routing.rs")).unwrap();
    let lower = routing.to_lowercase();
    assert!(!lower.contains("dingtalk") && !lower.contains("zentao"));
    assert!(
        routing.lines().count() <= 300,
        "routing.rs grew past 300 lines"
    );
}

/// A connector reads what the notice types for it, never the source's fields that templates
/// see (`Notice::fields`): a field access named `fields` anywhere in a connector's folder.
#[test]
fn no_connector_reads_a_sources_fields() {
    use syn::visit::Visit;
    struct Reads(Vec<String>);
    impl<'a> Visit<'a> for Reads {
        fn visit_expr_field(&mut self, e: &'a syn::ExprField) {
            if let syn::Member::Named(name) = &e.member
                && name == "fields"
            {
                self.0.push(name.to_string());
            }
            syn::visit::visit_expr_field(self, e);
        }
    }
    let mut files = vec![];
    code_files(&repo().join("shared/src/connectors"), &mut files);
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
    {
        let file = syn::parse_file(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut reads = Reads(vec![]);
        reads.visit_file(&file);
        assert!(
            reads.0.is_empty(),
            "{} reads a notice's `fields`",
            path.display()
        );
    }
    // The reader sees it where it is.
    let mut reads = Reads(vec![]);
    reads.visit_file(&syn::parse_str("fn f(n: &Notice) { let _ = &n.fields[\"kind\"]; }").unwrap());
    assert_eq!(reads.0.len(), 1);
}

/// What each part touches outside its own file or folder: exactly its function crate, its
/// template resources, its `mod` line and its registry line (two lines: its `use` and its
/// entry). Its CLI commands and setup instructions are in its room too. The first test a new
/// part must pass.
#[test]
fn every_part_touches_only_its_rooms() {
    let parts = parts();
    assert!(parts.len() >= 7, "every part the registry has");
    for (kind, name, function) in &parts {
        assert_eq!(
            footprint(kind, name, function),
            set(&[
                &format!("functions/{function}/"),
                &format!("shared/src/{kind}/mod.rs"),
                "shared/src/registry.rs",
                "template.yaml",
            ]),
            "{kind}::{name}"
        );
        let shares_a_name = parts.iter().filter(|(_, n, _)| n == name).count();
        assert_eq!(registry_lines(name), 2 * shares_a_name, "{kind}::{name}");
    }
}

/// The library's modules depend on each other in one direction: no circle of imports (by the
/// paths the compiler reads, tests left out), so each can be read, and changed, from below.
#[test]
fn the_librarys_modules_import_in_one_direction() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = repo();
    let mut files = vec![];
    code_files(&root.join("shared/src"), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
    {
        let paths = Paths::of(&root, path, &std::fs::read_to_string(path).unwrap(), true);
        let Some(from) = paths.module.first().cloned() else {
            continue; // lib.rs
        };
        for (resolved, p) in &paths.found {
            if let (true, Some(to)) = (resolved, p.first())
                && *to != from
            {
                edges.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    // A module that reaches itself again through its imports is in a circle.
    for start in edges.keys() {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![start.clone()]);
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                assert_ne!(
                    next, start,
                    "{start} imports itself again through {m}: {edges:#?}"
                );
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
    }
    assert!(edges.len() > 10, "the modules were read: {edges:?}");
}
