//! The server crate's module map, enforced. [`LAYERS`] says, for each top-level module of
//! `src/`, which other top-level modules it may name (`crate::x`); the tests read every
//! source file and fail on an edge the table does not allow, on a module the table does
//! not place, and on a cycle — in the table or in the code. ARCHITECTURE.md shows this
//! table; change both together.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it may import. Listed from the top (the
/// command line and the composition root) down to the leaves; every edge points down.
const LAYERS: &[(&str, &[&str])] = &[
    // The command line: parses, then builds the app or calls the service layer.
    (
        "cli",
        &[
            "app", "http", "service", "api", "keys", "config", "clock", "gateway", "login",
            "password", "vocab",
        ],
    ),
    // The composition root: builds the runtime state and starts every task.
    (
        "app",
        &[
            "http",
            "runtime",
            "oauth",
            "service",
            "keys",
            "audit",
            "config",
            "clock",
            "telemetry",
        ],
    ),
    // The web layer: routes, extractors, problems. Nothing below it names HTTP.
    (
        "http",
        &[
            "anomaly",
            "oauth",
            "runtime",
            "service",
            "api",
            "keys",
            "audit",
            "client_auth",
            "config",
            "password",
            "revocation",
            "telemetry",
            "vocab",
            "clock",
            "directory",
        ],
    ),
    // Anomaly responses: detection over the runtime's memory, revocation through the
    // service layer.
    (
        "anomaly",
        &[
            "runtime",
            "service",
            "api",
            "audit",
            "client_auth",
            "vocab",
            "clock",
            "webhook",
        ],
    ),
    // OAuth: issuance, DPoP, activeness, the errors of the OAuth endpoints.
    (
        "oauth",
        &[
            "runtime",
            "service",
            "audit",
            "client_auth",
            "clock",
            "config",
            "password",
            "vocab",
            "keys",
            "directory",
            "revocation",
        ],
    ),
    // The state a process shares between requests, and its in-memory pieces.
    (
        "runtime",
        &[
            "keys",
            "directory",
            "revocation",
            "audit",
            "client_auth",
            "password",
            "webhook",
            "config",
            "clock",
            "telemetry",
        ],
    ),
    // Signing keys and their rotation (an emergency rotation revokes through the
    // service layer).
    ("keys", &["service", "api", "audit", "clock", "config"]),
    // The service layer: admin operations. Knows no HTTP, no runtime state, no OAuth.
    (
        "service",
        &[
            "api",
            "audit",
            "client_auth",
            "clock",
            "config",
            "vocab",
            "webhook",
        ],
    ),
    // The admin API's wire types, shared by REST, CLI and webhook.
    ("api", &["vocab"]),
    // Infrastructure and leaves.
    ("client_auth", &["directory"]),
    ("audit", &["clock"]),
    ("revocation", &["clock"]),
    ("webhook", &["clock"]),
    ("telemetry", &["config"]),
    ("gateway", &["config", "telemetry"]),
    ("directory", &[]),
    ("password", &[]),
    ("login", &[]),
    ("config", &[]),
    ("clock", &[]),
    ("vocab", &[]),
];

/// Modules outside `http/` that may name `crate::http`: the composition root serves the
/// router, and the command line prints the OpenAPI document.
const MAY_NAME_HTTP: &[&str] = &["app", "cli"];

/// The web layer's families (`http/<family>/`) and what each may name besides the
/// shared modules (`http/mod.rs`, `auth`, `error`, `extract`, `form`, `connections`):
/// the admin API lists revocations as the feed pages them, and the OpenAPI document
/// names every handler. The shared modules name no family (the root router in
/// `http/mod.rs` mounts them all).
const HTTP_FAMILIES: &[(&str, &[&str])] = &[
    ("oauth", &[]),
    ("v1", &[]),
    ("admin", &["v1"]),
    ("ops", &["oauth", "v1", "admin"]),
];

/// The service layer, and what it must never name.
const SERVICE: &str = "service";
const ABOVE_SERVICE: &[&str] = &["http", "runtime", "oauth", "app", "cli", "anomaly"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`http/admin/auth.rs` → `http`); `None` for
/// the crate root and the binary.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Every `crate::x` a file names outside comments, with its line number.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '{')
                .collect();
            refs.push((n + 1, name));
        }
    }
    refs
}

/// Module → (module it names → first place it does).
fn actual_edges() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("super::super::"),
            "{}: reach other modules as crate::…, not super::super::",
            file.display()
        );
        for (line, to) in crate_refs(&text) {
            assert!(
                !to.starts_with('{'),
                "{}:{line}: one `use crate::module::…` per module, so the layering test sees it",
                file.display()
            );
            if to != from {
                let place = format!("{}:{line}", file.strip_prefix(src()).unwrap().display());
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(place);
            }
        }
    }
    edges
}

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    LAYERS
        .iter()
        .map(|(module, deps)| (*module, deps.iter().copied().collect()))
        .collect()
}

/// A cycle in `graph`, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut done, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn every_module_is_placed_in_the_table() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .collect();
    let placed: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    assert_eq!(declared, placed, "lib.rs's modules and the LAYERS table");
}

#[test]
fn imports_follow_the_table() {
    let allowed = allowed();
    let mut wrong = Vec::new();
    for (from, tos) in actual_edges() {
        for (to, place) in tos {
            if !allowed
                .get(from.as_str())
                .is_some_and(|a| a.contains(to.as_str()))
            {
                wrong.push(format!("{place}: {from} → {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports the LAYERS table does not allow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_cycle_among_top_level_modules() {
    let table: BTreeMap<String, BTreeSet<String>> = LAYERS
        .iter()
        .map(|(m, deps)| {
            (
                (*m).to_owned(),
                deps.iter().map(|d| (*d).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(find_cycle(&table), None, "the LAYERS table has a cycle");
    let code: BTreeMap<String, BTreeSet<String>> = actual_edges()
        .into_iter()
        .map(|(m, tos)| (m, tos.into_keys().collect()))
        .collect();
    assert_eq!(find_cycle(&code), None, "the code has an import cycle");
}

#[test]
fn only_the_composition_root_and_the_cli_name_http() {
    for (from, tos) in actual_edges() {
        if let Some(place) = tos.get("http") {
            assert!(
                MAY_NAME_HTTP.contains(&from.as_str()),
                "{place}: {from} imports crate::http"
            );
        }
    }
}

/// Which `http/` part a file is in: a family, or `None` for the shared modules.
fn http_family(file: &Path) -> Option<Option<String>> {
    let rel = file.strip_prefix(src().join("http")).ok()?;
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?.to_owned();
    Some(parts.next().map(|_| first))
}

#[test]
fn web_families_do_not_reach_into_each_other() {
    let families: BTreeMap<&str, BTreeSet<&str>> = HTTP_FAMILIES
        .iter()
        .map(|(f, deps)| (*f, deps.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rust_files(&src().join("http"), &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let Some(from) = http_family(&file) else {
            continue;
        };
        if file.ends_with("http/mod.rs") {
            continue;
        }
        if let Some(family) = &from {
            assert!(
                families.contains_key(family.as_str()),
                "{}: http/{family}/ is not in HTTP_FAMILIES",
                file.display()
            );
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may read the API description.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for family in families.keys() {
                let named = line.contains(&format!("crate::http::{family}::"))
                    || line.contains(&format!("crate::http::{family}::{{"))
                    || line.contains(&format!("super::{family}::"));
                let allowed = match &from {
                    Some(own) => own == family || families[own.as_str()].contains(family),
                    None => false,
                };
                if named && !allowed {
                    wrong.push(format!(
                        "{}:{}: {} names http::{family}",
                        file.strip_prefix(src()).unwrap().display(),
                        n + 1,
                        from.as_deref().unwrap_or("a shared http module"),
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_service_layer_knows_no_http_runtime_or_oauth() {
    let edges = actual_edges();
    for above in ABOVE_SERVICE {
        if let Some(place) = edges.get(SERVICE).and_then(|tos| tos.get(*above)) {
            panic!("{place}: the service layer imports crate::{above}");
        }
    }
}

#[test]
fn mayfly_scopes_are_defined_once() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for file in files {
        if file.ends_with("vocab.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may spell scopes out.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find("\"mayfly:") {
                rest = &rest[at + 1..];
                let literal: String = rest.chars().take_while(|c| *c != '"').collect();
                // A scope is `mayfly:` and lowercase words (a prefix alone, or a message
                // starting `mayfly: …`, is not one).
                let is_scope = literal.len() > "mayfly:".len()
                    && literal
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == ':' || c == '_');
                assert!(
                    !is_scope,
                    "{}:{}: scope {literal:?} spelled out; name it from crate::vocab",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn main_is_dispatch_only() {
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(
        main.lines().count() <= 120,
        "main.rs has {} lines",
        main.lines().count()
    );
}
