//! The module graph check: dependencies point one way.
//!
//! A test, not code the relay runs. It reads every file under `src/`, collects the
//! `crate::…` and `super::…` paths each module names (in `use` trees and in expressions,
//! with comments, strings and `#[cfg(test)]` modules left out) and checks:
//!
//! - the top-level modules form a graph without cycles, and each one only uses modules of
//!   a lower layer in [`LAYERS`] (or of its own layer);
//! - inside each folder module, the sibling submodules form a graph without cycles (a
//!   submodule may use its parent's `mod.rs`, and the parent its children: that is what a
//!   folder is for);
//! - nothing outside `src/storage/` names `sqlx` or a storage backend's module, so the rest
//!   of the relay sees storage only through its interface.
//!
//! `cargo test --lib layering -- --nocapture` also prints the graph: layers, files per
//! layer and the cycles found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first. A module may use modules of its own layer or below, never
/// above. Every top-level module must be listed (a new one must choose its place).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base: leaf types and helpers, no knowledge of the plan",
        &[
            "swedish",
            "alertmanager",
            "inventory",
            "metrics",
            "secret",
            "tls",
        ],
    ),
    (
        "domain: the plan's rules, each owning its settings",
        &[
            "classify",
            "notice",
            "incident",
            "links",
            "subscription",
            "maintenance",
        ],
    ),
    (
        "config: parses, checks and assembles settings",
        &["config", "telemetry"],
    ),
    (
        "services: storage, delivery and the workers",
        &[
            "storage",
            "cluster",
            "delivery",
            "ingest",
            "backlog",
            "incident_worker",
            "publishing",
            "operators",
            "followup",
            "gauges",
            "simulate",
            "subscribers",
            "maintenance_actions",
            "maintenance_scheduler",
            "silences",
        ],
    ),
    ("http: the only HTTP server", &["http"]),
    ("app: wiring and the command line", &["app", "cli"]),
];

/// A module's path below the crate root, e.g. `["storage", "sqlite"]`.
type ModulePath = Vec<String>;

struct SourceFile {
    module: ModulePath,
    path: PathBuf,
    code: String,
}

/// Every module file under `src/` except the binary's `main.rs` and the crate root.
fn source_files(src: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("read src/ entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src/");
            let mut module: ModulePath = relative
                .iter()
                .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] || module == ["layering"] {
                continue;
            }
            // `tests.rs` files are `#[cfg(test)]` modules: they may use anything.
            if module.last().is_some_and(|last| last == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source file");
            let code = without_test_modules(&without_comments_and_literals(&text));
            files.push(SourceFile { module, path, code });
        }
    }
    files.sort_by(|a, b| a.module.cmp(&b.module));
    files
}

/// Source text with comments, string and char literals blanked out (lengths and line
/// breaks kept), so that only code is searched for paths.
fn without_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while index < chars.len() {
        let c = chars[index];
        let next = chars.get(index + 1).copied();
        if c == '/' && next == Some('/') {
            while index < chars.len() && chars[index] != '\n' {
                out.push(' ');
                index += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while index < chars.len() {
                if chars[index] == '/' && chars.get(index + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    index += 2;
                } else if chars[index] == '*' && chars.get(index + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    index += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[index]));
                    index += 1;
                }
            }
        } else if (c == 'r' || c == 'b')
            && !chars
                .get(index.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&chars, index).is_some()
        {
            let (hashes, body_start) = raw_string_start(&chars, index).expect("checked");
            for &skipped in &chars[index..body_start] {
                out.push(blank(skipped));
            }
            index = body_start;
            let closing: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            while index < chars.len() && !chars[index..].starts_with(&closing) {
                out.push(blank(chars[index]));
                index += 1;
            }
            for _ in 0..closing.len().min(chars.len() - index) {
                out.push(' ');
                index += 1;
            }
        } else if c == '"' {
            out.push(' ');
            index += 1;
            while index < chars.len() && chars[index] != '"' {
                if chars[index] == '\\' {
                    out.push(' ');
                    index += 1;
                }
                if index < chars.len() {
                    out.push(blank(chars[index]));
                    index += 1;
                }
            }
            out.push(' ');
            index += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}', '"') or a lifetime ('a).
            let literal_end = if next == Some('\\') {
                chars[index + 2..]
                    .iter()
                    .position(|&d| d == '\'')
                    .map(|offset| index + 2 + offset)
            } else if chars.get(index + 2) == Some(&'\'') {
                Some(index + 2)
            } else {
                None
            };
            match literal_end {
                Some(end) => {
                    for _ in index..=end {
                        out.push(' ');
                    }
                    index = end + 1;
                }
                None => {
                    out.push(c);
                    index += 1;
                }
            }
        } else {
            out.push(c);
            index += 1;
        }
    }
    out
}

/// At a raw string (`r"`, `r#"`, `br#"`): the number of `#` and where its body starts.
fn raw_string_start(chars: &[char], index: usize) -> Option<(usize, usize)> {
    let mut position = index;
    if chars[position] == 'b' {
        position += 1;
    }
    if chars.get(position) != Some(&'r') {
        return None;
    }
    position += 1;
    let mut hashes = 0;
    while chars.get(position) == Some(&'#') {
        hashes += 1;
        position += 1;
    }
    (chars.get(position) == Some(&'"')).then_some((hashes, position + 1))
}

/// Code with every `#[cfg(test)] mod name { … }` block removed.
fn without_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(start) = out.find("#[cfg(test)]") {
        let after = &out[start + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_module = trimmed.starts_with("mod ") || trimmed.starts_with("pub(crate) mod ");
        let end = if is_module {
            let brace = after
                .find(['{', ';'])
                .map(|offset| start + "#[cfg(test)]".len() + offset);
            match brace {
                Some(open) if out.as_bytes()[open] == b'{' => matching_brace(&out, open),
                Some(semicolon) => Some(semicolon),
                None => None,
            }
        } else {
            None
        };
        match end {
            Some(end) => out.replace_range(start..=end, ""),
            // A test-only item that is not a module (a function, an impl): just drop
            // the attribute and keep scanning; its paths are rare and harmless.
            None => out.replace_range(start..start + "#[cfg(test)]".len(), ""),
        }
    }
    out
}

fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (offset, byte) in code.as_bytes()[open..].iter().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + offset);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every path the code names from `crate::`, `super::` or `self::`, expanded through `use`
/// groups and made absolute (segments below the crate root).
fn named_paths(module: &ModulePath, code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        let starts_word =
            index == 0 || !is_ident_byte(bytes[index - 1]) && bytes[index - 1] != b':';
        if starts_word {
            for root in ["crate", "super", "self"] {
                let rest = &code[index..];
                if rest.starts_with(root) && rest[root.len()..].trim_start().starts_with("::") {
                    let base = match root {
                        "crate" => Some(Vec::new()),
                        // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` (module a::b) it is `a`.
                        "super" => module.split_last().map(|(_, parent)| parent.to_vec()),
                        _ => Some(module.clone()),
                    };
                    let after = index + root.len();
                    let (tree, consumed) = parse_use_tree(&code[after..]);
                    if let Some(base) = base {
                        for suffix in tree {
                            let mut full = base.clone();
                            let mut suffix = suffix.into_iter().peekable();
                            // `super::super::x`
                            while suffix.peek().is_some_and(|segment| segment == "super") {
                                suffix.next();
                                full.pop();
                            }
                            full.extend(suffix);
                            paths.push(full);
                        }
                    }
                    index = after + consumed.max(1);
                    break;
                }
            }
        }
        index += 1;
    }
    paths
}

fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Parses what follows a root (`::a::b`, `::{a, b::{c, d}}`) into the list of paths it
/// names and the number of bytes read.
fn parse_use_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut index = 0;
    let mut prefix = Vec::new();
    loop {
        let after_space = skip_space(bytes, index);
        if !text[after_space..].starts_with("::") {
            return (vec![prefix], index);
        }
        index = skip_space(bytes, after_space + 2);
        if bytes.get(index) == Some(&b'{') {
            let mut paths = Vec::new();
            index += 1;
            loop {
                index = skip_space(bytes, index);
                match bytes.get(index) {
                    Some(b'}') => return (paths, index + 1),
                    Some(b',') => index += 1,
                    None => return (paths, index),
                    Some(_) => {
                        // One item of the group: a path, maybe with its own group.
                        let (mut items, consumed) =
                            parse_use_tree(&format!("::{}", &text[index..]));
                        let consumed = consumed.saturating_sub(2);
                        for item in &mut items {
                            let mut full = prefix.clone();
                            full.append(item);
                            paths.push(full);
                        }
                        index += consumed.max(1);
                        // Skip `as alias` up to the next separator.
                        while let Some(&byte) = bytes.get(index) {
                            if byte == b',' || byte == b'}' {
                                break;
                            }
                            index += 1;
                        }
                    }
                }
            }
        }
        let start = index;
        while bytes.get(index).is_some_and(|&byte| is_ident_byte(byte)) {
            index += 1;
        }
        if index == start {
            // `::*` or `::<T>`: the prefix so far is the path.
            return (vec![prefix], index);
        }
        prefix.push(text[start..index].to_string());
    }
}

fn skip_space(bytes: &[u8], mut index: usize) -> usize {
    while bytes
        .get(index)
        .is_some_and(|byte| byte.is_ascii_whitespace())
    {
        index += 1;
    }
    index
}

/// The module graph: for each module, the modules it uses (resolved to the longest known
/// module prefix of each named path).
fn module_graph(files: &[SourceFile]) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let modules: BTreeSet<ModulePath> = files.iter().map(|file| file.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for file in files {
        let mut used = BTreeSet::new();
        for path in named_paths(&file.module, &file.code) {
            let target = (1..=path.len())
                .rev()
                .map(|length| path[..length].to_vec())
                .find(|prefix| modules.contains(prefix));
            if let Some(target) = target
                && target != file.module
            {
                used.insert(target);
            }
        }
        graph.insert(file.module.clone(), used);
    }
    graph
}

/// Strongly connected components with more than one node (Tarjan), each sorted.
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        on_stack: BTreeSet<N>,
        stack: Vec<N>,
        next: usize,
        found: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(node: &N, graph: &BTreeMap<N, BTreeSet<N>>, state: &mut State<N>) {
        state.index.insert(node.clone(), state.next);
        state.low.insert(node.clone(), state.next);
        state.next += 1;
        state.stack.push(node.clone());
        state.on_stack.insert(node.clone());
        for target in graph.get(node).into_iter().flatten() {
            if !state.index.contains_key(target) {
                visit(target, graph, state);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node.clone(), low);
            } else if state.on_stack.contains(target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node.clone(), low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(&member);
                let done = &member == node;
                component.push(member);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on_stack: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.found.sort();
    state.found
}

/// The graph between the children of `parent` (each child's whole subtree is one node).
fn sibling_graph(
    graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>,
    parent: &[String],
) -> BTreeMap<String, BTreeSet<String>> {
    let child_of = |module: &ModulePath| -> Option<String> {
        (module.len() > parent.len() && module.starts_with(parent))
            .then(|| module[parent.len()].clone())
    };
    let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, used) in graph {
        let Some(from) = child_of(module) else {
            continue;
        };
        let entry = siblings.entry(from.clone()).or_default();
        for target in used {
            if let Some(to) = child_of(target)
                && to != from
            {
                entry.insert(to);
            }
        }
    }
    siblings
}

struct Report {
    /// Cycles, each as a readable line.
    cycles: Vec<String>,
    /// Uses that go up the layers.
    upward: Vec<String>,
    /// Top-level modules missing from `LAYERS`.
    unplaced: Vec<String>,
    /// Files outside storage that name sqlx or a backend.
    storage_leaks: Vec<String>,
    /// A summary of the graph for people.
    summary: String,
}

fn check(src: &Path) -> Report {
    let files = source_files(src);
    let graph = module_graph(&files);
    let layer_of = |name: &str| {
        LAYERS
            .iter()
            .position(|(_, members)| members.contains(&name))
    };

    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, used) in &graph {
        let from = module[0].clone();
        let entry = top.entry(from.clone()).or_default();
        for target in used {
            if target[0] != from {
                entry.insert(target[0].clone());
            }
        }
    }

    let mut found_cycles: Vec<String> = cycles(&top)
        .into_iter()
        .map(|component| format!("top-level modules: {}", component.join(" <-> ")))
        .collect();
    let mut parents: BTreeSet<ModulePath> = BTreeSet::new();
    parents.insert(Vec::new());
    for module in graph.keys() {
        for length in 1..module.len() {
            parents.insert(module[..length].to_vec());
        }
    }
    for parent in parents.iter().filter(|parent| !parent.is_empty()) {
        for component in cycles(&sibling_graph(&graph, parent)) {
            found_cycles.push(format!(
                "inside {}: {}",
                parent.join("::"),
                component.join(" <-> ")
            ));
        }
    }

    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for (from, used) in &top {
        let Some(from_layer) = layer_of(from) else {
            unplaced.push(from.clone());
            continue;
        };
        for to in used {
            if let Some(to_layer) = layer_of(to)
                && to_layer > from_layer
            {
                upward.push(format!(
                    "{from} (layer {from_layer}) uses {to} (layer {to_layer})"
                ));
            }
        }
    }

    let storage_leaks = files
        .iter()
        .filter(|file| file.module[0] != "storage")
        .filter(|file| {
            file.code.contains("sqlx")
                || named_paths(&file.module, &file.code).iter().any(|path| {
                    path.len() > 1
                        && path[0] == "storage"
                        && ["sqlite", "postgres"].contains(&path[1].as_str())
                })
        })
        .map(|file| file.path.display().to_string())
        .collect();

    let mut summary = String::new();
    for (layer, (title, members)) in LAYERS.iter().enumerate() {
        let n_files = files
            .iter()
            .filter(|file| members.contains(&file.module[0].as_str()))
            .count();
        summary.push_str(&format!("layer {layer} ({title}): {n_files} files\n"));
        for member in *members {
            let uses = top
                .get(*member)
                .map(|used| used.iter().cloned().collect::<Vec<_>>().join(", "));
            if let Some(uses) = uses {
                summary.push_str(&format!("  {member} -> {uses}\n"));
            }
        }
    }
    summary.push_str(&format!(
        "{} files, {} module edges, {} cycles, {} upward uses\n",
        files.len(),
        graph.values().map(BTreeSet::len).sum::<usize>(),
        found_cycles.len(),
        upward.len()
    ));

    Report {
        cycles: found_cycles,
        upward,
        unplaced,
        storage_leaks,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn modules_form_layers_without_cycles() {
        let report = check(&src());
        println!("{}", report.summary);
        for cycle in &report.cycles {
            println!("cycle: {cycle}");
        }
        for upward in &report.upward {
            println!("upward: {upward}");
        }
        assert!(
            report.unplaced.is_empty(),
            "top-level modules without a layer in LAYERS: {:?}",
            report.unplaced
        );
        assert!(
            report.cycles.is_empty(),
            "module cycles:\n{}",
            report.cycles.join("\n")
        );
        assert!(
            report.upward.is_empty(),
            "uses up the layers:\n{}",
            report.upward.join("\n")
        );
    }

    #[test]
    fn only_storage_names_its_backends() {
        let report = check(&src());
        assert!(
            report.storage_leaks.is_empty(),
            "files outside src/storage/ that name sqlx or a backend: {:?}",
            report.storage_leaks
        );
    }

    #[test]
    fn paths_are_read_through_use_groups_and_literals() {
        let code = without_comments_and_literals(
            "use crate::{a::{B, c::D}, e};\n// crate::commented::X\nlet s = \"crate::quoted::Y\";\nlet r = r#\"crate::raw\"#;\nlet c = '\"'; super::f::g();\nfn x<'a>(y: &'a str) { crate::h::i(y) }",
        );
        let paths = named_paths(&vec!["m".into(), "n".into()], &code);
        let paths: Vec<String> = paths.iter().map(|path| path.join("::")).collect();
        assert_eq!(paths, ["a::B", "a::c::D", "e", "m::f::g", "h::i"]);
    }

    #[test]
    fn a_cycle_is_found() {
        let graph: BTreeMap<&str, BTreeSet<&str>> = [
            ("a", BTreeSet::from(["b"])),
            ("b", BTreeSet::from(["c"])),
            ("c", BTreeSet::from(["a"])),
            ("d", BTreeSet::from(["a"])),
        ]
        .into_iter()
        .collect();
        assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn test_modules_are_left_out() {
        let code = without_test_modules(
            "fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::x; fn b() { { } }\n}\nfn c() {}",
        );
        assert_eq!(code, "fn a() {}\n\nfn c() {}");
    }
}
