//! The crate's module graph stays acyclic and layered (Go enforces this by
//! language; we enforce it by test).
//!
//! Every `crate::<module>` path in the library's sources (and `super::<file>`
//! between sibling files) is an edge. The test fails when:
//! - top-level modules import each other in a circle;
//! - a module imports one on a higher layer (the layers are listed below,
//!   top to bottom, as docs/architecture.md draws them);
//! - files of one module import each other in a circle.
//!
//! To see the graph: `cargo test --test module_graph -- --nocapture print_graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom: a module may import only from its own layer's other
/// modules (without a circle) or from layers below it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["gateway"],
    &["transport"],
    &["stateless"],
    &["session"],
    &["route"],
    &["backend"],
    &["auth"],
    &["service", "connect"],
    &["policy", "store", "config"],
    &["oauth", "web", "telemetry", "wire2026"],
    &["jsonrpc", "caller", "util"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its comments and string literals, so a path in
/// a doc comment or a message is not an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escaped char literal ('\n', '\'', '\u{..}').
            i += 3;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' must not open a string.
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Names that follow `prefix` in `code`: `crate::x` gives `x`, and
/// `crate::{x, y::z}` gives `x` and `y`.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

struct Graph {
    /// Top-level module -> modules it imports (with one file that does).
    modules: BTreeMap<String, BTreeMap<String, String>>,
    /// Within one top-level module: file -> sibling files it imports.
    files: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let top_level: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.strip_prefix(&root).ok())
        .filter_map(|rel| {
            let first = rel.components().next()?.as_os_str().to_str()?;
            Some(first.trim_end_matches(".rs").to_string())
        })
        .filter(|m| !["lib", "main", "bin"].contains(&m.as_str()))
        .collect();
    let mut g = Graph {
        modules: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    for path in &files {
        let Ok(rel) = path.strip_prefix(&root) else {
            continue;
        };
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        let module = parts[0].trim_end_matches(".rs").to_string();
        if !top_level.contains(&module) {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("readable source");
        let code = code_only(&text);
        let display = rel.display().to_string();
        let entry = g.modules.entry(module.clone()).or_default();
        for name in names_after(&code, "crate::") {
            if name != module && top_level.contains(&name) {
                entry.entry(name).or_insert_with(|| display.clone());
            }
        }
        // Sibling files: `super::x` from `m/a.rs` names `m/x(.rs|/)`.
        if parts.len() >= 2 {
            let dir = parts[..parts.len() - 1].join("/");
            let me = parts[parts.len() - 1].trim_end_matches(".rs");
            if me == "mod" {
                continue;
            }
            let siblings: BTreeSet<String> = std::fs::read_dir(root.join(&dir))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.trim_end_matches(".rs").to_string();
                    (n != "mod").then_some(n)
                })
                .collect();
            let mut refs = names_after(&code, "super::");
            let own_prefix = format!("crate::{}::", parts[..parts.len() - 1].join("::"));
            refs.extend(names_after(&code, &own_prefix));
            let node = g
                .files
                .entry(dir.clone())
                .or_default()
                .entry(me.to_string())
                .or_default();
            for r in refs {
                if r != me && siblings.contains(&r) {
                    node.insert(r);
                }
            }
        }
    }
    g
}

/// The first circle found among `edges`, as a path that ends where it began.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut circle = stack[start..].to_vec();
                    circle.push(m.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_no_circle() {
    let g = graph();
    let edges: BTreeMap<String, BTreeSet<String>> = g
        .modules
        .iter()
        .map(|(m, to)| (m.clone(), to.keys().cloned().collect()))
        .collect();
    assert!(edges.len() > 10, "the sources were not found: {edges:?}");
    if let Some(circle) = find_cycle(&edges) {
        let why: Vec<String> = circle
            .windows(2)
            .map(|w| format!("{} -> {} (in {})", w[0], w[1], g.modules[&w[0]][&w[1]]))
            .collect();
        panic!(
            "the modules import each other in a circle:\n  {}",
            why.join("\n  ")
        );
    }
}

#[test]
fn modules_import_only_downwards() {
    let g = graph();
    let mut upward = Vec::new();
    for (from, to) in &g.modules {
        let Some(lf) = layer_of(from) else {
            panic!("module {from} is on no layer: add it to LAYERS in tests/module_graph.rs");
        };
        for (target, file) in to {
            let lt = layer_of(target).unwrap_or(usize::MAX);
            if lt < lf {
                upward.push(format!("{from} -> {target} (in {file})"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up a layer (see LAYERS):\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn files_of_one_module_import_no_circle() {
    let g = graph();
    for (dir, edges) in &g.files {
        if let Some(circle) = find_cycle(edges) {
            panic!(
                "files of src/{dir} import each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_checks_see_a_circle_when_there_is_one() {
    // The checker itself: a circle must be found, a chain must not.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let code = code_only("use crate::{a, b::c}; // crate::z\nlet s = \"crate::y\"; crate::d::e();");
    assert_eq!(names_after(&code, "crate::"), vec!["a", "b", "d"]);
}

#[test]
fn print_graph() {
    let g = graph();
    for (m, to) in &g.modules {
        let names: Vec<&str> = to.keys().map(String::as_str).collect();
        println!("{m} -> {}", names.join(", "));
    }
}
