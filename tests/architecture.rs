//! The layers stay true: read every `crate::` path under `src/` and check that
//! the module graph has no cycle, that the layers only point down, and that the
//! Azure clients know nothing of HTTP responses or problems.
//!
//! Test code (`#[cfg(test)]` sections) is left out: a unit test may reach
//! across layers to build its fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file belongs to (`azure` for `src/azure/blobs.rs`).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The file's code without its test section.
fn production_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Module → the modules it names as `crate::<module>`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = production_code(&file);
        let targets = edges.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                targets.insert(name);
            }
        }
    }
    edges
}

#[test]
fn no_module_imports_a_module_that_imports_it() {
    let edges = graph();
    // Depth-first search for a path back to the start, from every module.
    fn reaches(
        edges: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in edges.get(from).into_iter().flatten() {
            path.push(next.clone());
            if next == to || (seen.insert(next.clone()) && reaches(edges, next, to, seen, path)) {
                return true;
            }
            path.pop();
        }
        false
    }
    for module in edges.keys() {
        let mut path = vec![module.clone()];
        assert!(
            !reaches(&edges, module, module, &mut BTreeSet::new(), &mut path),
            "import cycle: {}",
            path.join(" → ")
        );
    }
}

#[test]
fn layers_point_one_way() {
    // Lower layers never name higher ones:
    // startup → protocol (adapters) → functions → doctor → azure (clients) → identity.
    let order = [
        "startup",
        "protocol",
        "functions",
        "doctor",
        "azure",
        "identity",
    ];
    let edges = graph();
    for (i, upper) in order.iter().enumerate() {
        for lower in &order[i + 1..] {
            assert!(
                !edges[*lower].contains(*upper),
                "{lower} names {upper}: dependencies must point down"
            );
        }
    }
    // Telemetry is the floor: every layer opens spans, it names none of them.
    for layer in order
        .iter()
        .chain(&["problem", "invocation", "configuration"])
    {
        assert!(
            !edges["telemetry"].contains(*layer),
            "telemetry names {layer}"
        );
    }
    // The edge types stay below the adapters and functions.
    for edge_type in [
        "problem",
        "invocation",
        "state",
        "names",
        "configuration",
        "body_stream",
    ] {
        for upper in ["startup", "protocol", "functions"] {
            assert!(
                !edges[edge_type].contains(upper),
                "{edge_type} names {upper}"
            );
        }
    }
}

#[test]
fn the_azure_clients_know_nothing_of_http_responses_or_problems() {
    for file in rust_files(&src().join("azure")) {
        let code = production_code(&file);
        for forbidden in ["actix_web", "crate::problem", "Problem"] {
            assert!(
                !code.contains(forbidden),
                "{} mentions {forbidden}",
                file.display()
            );
        }
    }
}

#[test]
fn the_graph_is_read_from_the_source() {
    // A guard against a test that could not fail: the reader finds real edges.
    let edges = graph();
    assert!(edges["functions"].contains("azure"));
    assert!(edges["azure"].contains("identity"));
    assert!(edges["protocol"].contains("functions"));
}
