//! The crate's shape, as ARCHITECTURE.md draws it: the top-level modules form layers, and
//! every `crate::…` reference in production code points to a lower layer (so there is no
//! import loop and the data flows one way). Read from the sources, like the review that
//! asked for it; test code (`tests.rs`, `#[cfg(test)]` modules) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first: a module refers only to modules of lower layers.
const LAYERS: &[&[&str]] = &[
    // Vocabulary and plumbing: validated values, the handoff model and the failure
    // catalog; outbound HTTP helpers; the metrics registry.
    &["domain", "outbound", "metrics"],
    &["clock", "wake"],
    &["store"],
    // The remote sides, real or emulated: Dataverse, OpenCX's API, and the sandbox.
    &["dynamics", "opencx", "sandbox"],
    // OpenCX in and out: signatures, the envelope, signed sends, the callback address
    // policy, the payload upgrade.
    &["webhook"],
    // Org and connection rules, the vault, test-and-save.
    &["connection"],
    &["handoff", "diagnostics"],
    &["http"],
    &["config"],
    &["demo"],
    &["cli"],
];

/// Production source of every file under `src/`, by top-level module.
fn sources() -> BTreeMap<String, Vec<(String, String)>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut by_module: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let production = match text.find("#[cfg(test)]") {
            Some(at) => text[..at].to_owned(),
            None => text,
        };
        let module = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        by_module
            .entry(module)
            .or_default()
            .push((relative, production));
    }
    by_module
}

/// The top-level modules each module's production code refers to (`crate::x`), with the
/// file of one such reference.
fn references() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (module, files) in sources() {
        for (file, text) in files {
            for (at, _) in text.match_indices("crate::") {
                let target: String = text[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !target.is_empty() && target != module {
                    graph
                        .entry(module.clone())
                        .or_default()
                        .entry(target)
                        .or_insert_with(|| file.clone());
                }
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_refers_only_to_lower_layers() {
    let graph = references();
    let modules: BTreeSet<&String> = graph.keys().collect();
    assert!(modules.len() >= 12, "the sources were read: {modules:?}");
    let mut wrong = Vec::new();
    for (module, targets) in &graph {
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(from) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer of this test"));
            continue;
        };
        for (target, file) in targets {
            match layer_of(target) {
                Some(to) if to < from => {}
                _ => wrong.push(format!("{module} → {target} ({file})")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "references against the layers: {wrong:#?}"
    );
}

#[test]
fn the_review_rules_hold() {
    let graph = references();
    let uses = |from: &str, to: &str| graph.get(from).is_some_and(|t| t.contains_key(to));
    assert!(!uses("http", "handoff"), "http/ does not import handoff");
    for leaf in ["domain", "outbound", "metrics"] {
        assert!(
            !graph.contains_key(leaf),
            "{leaf} imports nothing from the crate"
        );
    }
    assert!(!uses("store", "dynamics") && !uses("dynamics", "store"));
    assert!(!uses("sandbox", "store") && !uses("sandbox", "dynamics"));
    assert!(!uses("sandbox", "opencx") && !uses("opencx", "sandbox"));
    assert!(!uses("handoff", "http"));

    // Secrets are sealed and opened only by `connection/` (the vault and its keyring).
    for (module, files) in sources() {
        for (file, text) in files {
            if module != "connection" {
                assert!(
                    !text.contains(".seal(") && !text.contains(".open("),
                    "{file} seals or opens a secret outside connection/"
                );
            }
        }
    }
}

#[test]
fn http_has_no_import_loop() {
    // The submodules of `http/`, by file or folder name.
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let submodules: BTreeSet<String> = std::fs::read_dir(&http)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.trim_end_matches(".rs").to_owned()
        })
        .filter(|name| name != "mod")
        .collect();
    assert!(submodules.len() >= 10, "{submodules:?}");
    let files = sources().remove("http").unwrap();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &files {
        // http/admin/orgs.rs → admin; http/webhooks.rs → webhooks; http/mod.rs → mod.
        let from = file
            .trim_start_matches("http/")
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let direct_child = file.matches('/').count() == 1;
        let prefixes: &[&str] = if direct_child && from != "mod" {
            &["crate::http::", "super::"]
        } else {
            &["crate::http::"]
        };
        for prefix in prefixes {
            for (at, _) in text.match_indices(prefix) {
                let name: String = text[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '{')
                    .collect();
                if from == "mod" || name == from {
                    continue;
                }
                // Only modules are reached through `http`: an item of `http/mod.rs` (the
                // router, the middleware, a re-export) would be a loop back to the parent.
                assert!(
                    submodules.contains(&name),
                    "{file} refers to `{prefix}{name}`, which is not a submodule of http/"
                );
                edges.entry(from.clone()).or_default().insert(name);
            }
        }
    }
    // No cycle among the submodules (depth-first search).
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        assert!(
            !path.iter().any(|p| p == node),
            "import loop in http/: {path:?} → {node}"
        );
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
}
