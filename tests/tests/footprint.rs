//! What adding a source or a connector touches, measured on two that exist (DMS, ZenTao): the
//! files outside the part's own room that refer to it in code. A new part touches the same
//! files; if this list grows, a seam has leaked (routing, ingress or config learned a name).

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
    let own = [
        root.join(format!("shared/src/{kind}/{name}.rs")),
        root.join(format!("shared/src/{kind}/{name}")),
    ];
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

/// Whether the Rust file at `path` names the part `kind::name` the way the compiler reads it:
/// in any path (expressions, types, patterns, macros' paths) or import (grouped ones included,
/// `use crate::sources::{dms, hap}`), with `self`, `super` and `crate` resolved from the file's
/// module, or by declaring it (`mod name;` in its kind's `mod.rs`).
fn names_part(root: &Path, path: &Path, text: &str, kind: &str, name: &str) -> bool {
    use syn::visit::Visit;

    struct Paths {
        module: Vec<String>,
        found: Vec<Vec<String>>,
        mods: Vec<String>,
    }
    impl Paths {
        /// `segments` from the crate root: `crate`, `hookbridge`, `self` and `super` resolved.
        fn absolute(&self, segments: Vec<String>) -> Vec<String> {
            let mut out = self.module.clone();
            let mut rest = segments.into_iter().peekable();
            match rest.peek().map(String::as_str) {
                Some("crate" | "hookbridge") => {
                    out.clear();
                    rest.next();
                }
                Some("self" | "super") => {}
                _ => return rest.collect(),
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
            out
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
    impl<'ast> Visit<'ast> for Paths {
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
            self.mods.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
        }
    }

    // The file's module path under `shared/src` (other crates: their own root).
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
    };
    paths.visit_file(&file);
    let declares = path == root.join(format!("shared/src/{kind}/mod.rs"))
        && paths.mods.iter().any(|m| m == name);
    declares
        || paths
            .found
            .iter()
            .any(|p| p.windows(2).any(|w| w[0] == kind && w[1] == name))
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

#[test]
fn a_source_is_one_file_a_function_and_a_registry_line() {
    let touched = footprint("sources", "dms", "dms-webhook");
    // `hookbridge dms verify` and `hookbridge setup dms` are DMS's own CLI tools (still in the
    // CLI's hub, not its folder): a new source need not have them.
    let optional = set(&["cli/src/main.rs", "cli/src/setup.rs"]);
    let required: BTreeSet<String> = touched.difference(&optional).cloned().collect();
    assert_eq!(
        required,
        set(&[
            "functions/dms-webhook/",
            "shared/src/registry.rs",
            "shared/src/sources/mod.rs",
            "template.yaml",
        ])
    );
    assert_eq!(registry_lines("dms"), 2);
}

#[test]
fn a_connector_is_one_folder_a_function_and_a_registry_line() {
    let touched = footprint("connectors", "zentao", "zentao-sender");
    // `hookbridge zentao chats|users` is ZenTao's own CLI tool: optional for a new connector.
    let optional = set(&["cli/src/main.rs"]);
    let required: BTreeSet<String> = touched.difference(&optional).cloned().collect();
    assert_eq!(
        required,
        set(&[
            "functions/zentao-sender/",
            "shared/src/connectors/mod.rs",
            "shared/src/registry.rs",
            "template.yaml",
        ])
    );
    assert_eq!(registry_lines("zentao"), 2);
}

#[test]
fn the_pipeline_core_names_no_part() {
    let core = [
        "shared/src/routing.rs",
        "shared/src/ingress.rs",
        "shared/src/delivery.rs",
        "shared/src/config.rs",
    ];
    for file in core {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for part in [
            "sources::hap",
            "sources::dms",
            "connectors::dingtalk",
            "connectors::zentao",
        ] {
            assert!(!text.contains(part), "{file} refers to {part}");
        }
    }
    let routing = std::fs::read_to_string(repo().join("shared/src/routing.rs")).unwrap();
    let lower = routing.to_lowercase();
    assert!(!lower.contains("dingtalk") && !lower.contains("zentao"));
    assert!(
        routing.lines().count() <= 300,
        "routing.rs grew past 300 lines"
    );
}

/// 浙政钉 was the first source and connector built on this shape: the same short lists.
#[test]
fn govding_touched_only_what_a_new_part_must() {
    // Its CLI tools (`hookbridge govding`, `hookbridge setup govding`) are optional, as for the
    // others.
    let optional = set(&["cli/src/main.rs", "cli/src/setup.rs"]);
    let source = footprint("sources", "govding", "govding-webhook");
    let connector = footprint("connectors", "govding", "govding-sender");
    assert_eq!(
        source
            .difference(&optional)
            .cloned()
            .collect::<BTreeSet<_>>(),
        set(&[
            "functions/govding-webhook/",
            "shared/src/registry.rs",
            "shared/src/sources/mod.rs",
            "template.yaml",
        ])
    );
    assert_eq!(
        connector
            .difference(&optional)
            .cloned()
            .collect::<BTreeSet<_>>(),
        set(&[
            "functions/govding-sender/",
            "shared/src/connectors/mod.rs",
            "shared/src/registry.rs",
            "template.yaml",
        ])
    );
    assert_eq!((registry_lines("govding")), 4, "a source and a connector");
}
