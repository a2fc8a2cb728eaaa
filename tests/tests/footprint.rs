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
            Some("rs") => {
                text.contains(&format!("{kind}::{name}"))
                    || (path == root.join(format!("shared/src/{kind}/mod.rs"))
                        && text.contains(&format!("mod {name};")))
            }
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
    // `hookbridge dms verify` is DMS's own CLI tool: a new source need not have one.
    let optional = set(&["cli/src/main.rs"]);
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
    // Its CLI tool (`hookbridge govding`) is optional, as for the others.
    let optional = set(&["cli/src/main.rs"]);
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
