//! Every error kind the sidecar can send is known on this side: in Rust's
//! [`SIDECAR_KINDS`] (and passed through by `Error::kind`), in the TypeScript
//! `ErrorKind`, and in the README. The sidecar's kinds are read from its
//! Python sources: each exception class derived from `QueueError` (its kind is
//! the class name) and the literal kinds of protocol/_errors.py.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_json::json;
use tauri_plugin_sync_queue::{Error, RpcError, LOCAL_KINDS, SIDECAR_KINDS};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            python_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}

/// `class Name(Base, Other):` → (Name, [Base, Other]).
fn class_line(line: &str) -> Option<(String, Vec<String>)> {
    let rest = line.strip_prefix("class ")?;
    let (name, rest) = rest.split_once('(')?;
    let (bases, _) = rest.split_once(')')?;
    let bases = bases
        .split(',')
        .map(|b| b.trim().rsplit('.').next().unwrap_or("").to_owned())
        .filter(|b| !b.is_empty())
        .collect();
    Some((name.trim().to_owned(), bases))
}

/// The kinds the sidecar puts in `data.kind`.
fn python_kinds() -> BTreeSet<String> {
    let package = crate_dir().join("../sidecar/sync_queue");
    let mut files = Vec::new();
    python_files(&package, &mut files);
    let mut classes = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        classes.extend(text.lines().filter_map(class_line));
    }
    // Subclasses of QueueError, however deep (a fixpoint over the classes).
    let mut errors = BTreeSet::from(["QueueError".to_owned()]);
    loop {
        let before = errors.len();
        for (name, bases) in &classes {
            if bases.iter().any(|b| errors.contains(b)) {
                errors.insert(name.clone());
            }
        }
        if errors.len() == before {
            break;
        }
    }
    errors.remove("QueueError"); // the base; never raised as such
                                 // Kinds written as literals, e.g. `{"kind": "InternalError"}` for a bug.
    let protocol_errors = std::fs::read_to_string(package.join("protocol/_errors.py")).unwrap();
    for piece in protocol_errors.split("\"kind\": \"").skip(1) {
        let kind: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
        errors.insert(kind);
    }
    errors
}

/// The names listed in guest-js's `export type ErrorKind = | 'A' | 'B' …`.
fn ts_kinds() -> BTreeSet<String> {
    let source = std::fs::read_to_string(crate_dir().join("guest-js/index.ts")).unwrap();
    let start = source
        .find("export type ErrorKind =")
        .expect("guest-js exports ErrorKind");
    let mut kinds = BTreeSet::new();
    for line in source[start..].lines().skip(1) {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        let Some(rest) = line.strip_prefix("| '") else {
            break;
        };
        kinds.insert(rest.split('\'').next().unwrap().to_owned());
    }
    kinds
}

#[test]
fn the_python_sources_are_read() {
    let kinds = python_kinds();
    // Without these the test below would pass on a parser that found nothing.
    for known in [
        "Locked",
        "InvalidParams",
        "MessageTooLarge",
        "InternalError",
    ] {
        assert!(kinds.contains(known), "{known} not found in {kinds:?}");
    }
    assert!(kinds.len() >= 15, "{kinds:?}");
    assert!(ts_kinds().len() >= 25, "{:?}", ts_kinds());
}

#[test]
fn every_sidecar_error_kind_is_known_to_rust_typescript_and_the_readme() {
    let ts = ts_kinds();
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).unwrap();
    for kind in python_kinds() {
        assert!(
            SIDECAR_KINDS.contains(&kind.as_str()),
            "the sidecar's {kind} is missing from SIDECAR_KINDS (src/error.rs)"
        );
        assert!(
            ts.contains(&kind),
            "the sidecar's {kind} is missing from ErrorKind (guest-js/index.ts)"
        );
        assert!(
            readme.contains(&format!("`{kind}`")),
            "the sidecar's {kind} is missing from tauri-plugin/README.md"
        );
        // A sidecar error keeps its kind through the plugin.
        let error = Error::Rpc(RpcError {
            code: -32600,
            message: "x".into(),
            data: Some(json!({ "kind": kind })),
        });
        assert_eq!(error.kind(), kind);
        assert_eq!(serde_json::to_value(&error).unwrap()["kind"], kind);
    }
}

#[test]
fn typescript_lists_exactly_the_kinds_rust_can_send() {
    let rust: BTreeSet<String> = SIDECAR_KINDS
        .iter()
        .chain(LOCAL_KINDS)
        .chain(&["Ipc"]) // guest-js's own: Tauri refused the call
        .map(|k| k.to_string())
        .collect();
    assert_eq!(ts_kinds(), rust);
    let readme = std::fs::read_to_string(crate_dir().join("README.md")).unwrap();
    for kind in &rust {
        assert!(
            readme.contains(&format!("`{kind}`")),
            "{kind} is missing from tauri-plugin/README.md"
        );
    }
}
