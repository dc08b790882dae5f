//! `modcheck`: the layering and size rules of minipay's code, checked in `make lint`.
//!
//! 1. **No import cycle between modules.** Every path a file names (`use` trees and inline
//!    `crate::…`, `super::…`, `self::…` paths, outside `#[cfg(test)]` modules and comments) is
//!    an edge from the file's module to the module it reaches. Edges are compared between
//!    siblings: `crate::http::orders` reaching `crate::domain::place` is the edge `http →
//!    domain` under the crate root, and `store::orders` reaching `store::dialect` is `orders →
//!    dialect` under `store`. A child using its parent's own items, or a parent its children,
//!    is containment, not an edge. Any cycle among the siblings of one parent fails the check.
//! 2. **No production file over the line limit**: the lines before a file's `#[cfg(test)]`
//!    module.
//!
//! Usage: `modcheck [--max-lines N] CRATE_SRC_DIR...` (each directory holds a `lib.rs`).
//! Exit 0 when clean, 1 with one line per finding otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A module path below the crate root, e.g. `["store", "orders"]`.
type ModPath = Vec<String>;

/// One reference from a module to a sibling subtree, kept for the report.
#[derive(Debug, Clone)]
struct Edge {
    file: PathBuf,
    line: usize,
    path: String,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut max_lines = 400usize;
    let mut roots = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--max-lines" {
            match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => max_lines = n,
                None => {
                    eprintln!("modcheck: --max-lines needs a number");
                    return ExitCode::from(2);
                }
            }
        } else {
            roots.push(PathBuf::from(arg));
        }
    }
    if roots.is_empty() {
        eprintln!("usage: modcheck [--max-lines N] CRATE_SRC_DIR...");
        return ExitCode::from(2);
    }
    let mut findings = Vec::new();
    for root in &roots {
        match check_crate(root, max_lines) {
            Ok(mut found) => findings.append(&mut found),
            Err(e) => {
                eprintln!("modcheck: {}: {e}", root.display());
                return ExitCode::from(2);
            }
        }
    }
    for finding in &findings {
        println!("{finding}");
    }
    if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every finding for one crate's source directory.
fn check_crate(root: &Path, max_lines: usize) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    let mut modules: BTreeMap<ModPath, PathBuf> = BTreeMap::new();
    for file in &files {
        if let Some(path) = module_path(root, file) {
            modules.insert(path, file.clone());
        }
    }
    let known: BTreeSet<ModPath> = modules.keys().cloned().collect();
    let mut findings = Vec::new();
    // parent → (child → (child → example edge))
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Edge>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = fs::read_to_string(file)?;
        let production = production_lines(&text);

        if production > max_lines {
            findings.push(format!(
                "{}: {production} lines of production code (limit {max_lines})",
                file.display()
            ));
        }
        let code = strip(&text);
        for (line, path) in references(&code) {
            let Some(target) = resolve(module, &path, &known) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // containment: an ancestor or a descendant
            }
            let parent = module[..common].to_vec();
            let (from, to) = (module[common].clone(), target[common].clone());
            graphs
                .entry(parent)
                .or_default()
                .entry(from)
                .or_default()
                .entry(to)
                .or_insert_with(|| Edge {
                    file: file.clone(),
                    line,
                    path: path.join("::"),
                });
        }
    }
    for (parent, graph) in &graphs {
        for cycle in cycles(graph) {
            let scope = if parent.is_empty() {
                "crate".to_owned()
            } else {
                parent.join("::")
            };
            let mut report = format!(
                "{}: import cycle under {scope}: {}",
                root.display(),
                cycle.join(" → ")
            );
            for pair in cycle.windows(2) {
                let edge = &graph[&pair[0]][&pair[1]];
                report.push_str(&format!(
                    "\n    {} → {}: {}:{} names {}",
                    pair[0],
                    pair[1],
                    edge.file.display(),
                    edge.line,
                    edge.path
                ));
            }
            findings.push(report);
        }
    }
    Ok(findings)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// `lib.rs` is the root, `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`; `main.rs` and
/// `bin/` belong to binaries, not to the library's module tree.
fn module_path(root: &Path, file: &Path) -> Option<ModPath> {
    let relative = file.strip_prefix(root).ok()?;
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" if parts.is_empty() => Some(parts),
        "main.rs" if parts.is_empty() => None,
        "mod.rs" => Some(parts),
        name => {
            parts.push(name.strip_suffix(".rs")?.to_owned());
            Some(parts)
        }
    }
}

/// The file's lines outside its `#[cfg(test)]` items (wherever they are declared).
fn production_lines(text: &str) -> usize {
    let stripped = blank_comments_and_literals(text);
    let total = text.lines().count();
    total.saturating_sub(test_item_lines(&stripped))
}

/// Lines spanned by `#[cfg(test)]` items (an inline `mod tests { … }` or a `mod tests;`).
fn test_item_lines(text: &str) -> usize {
    test_item_spans(text)
        .iter()
        .map(|&(start, end)| text[start..end].matches('\n').count() + 1)
        .sum()
}

/// The text with comments, string and character literals blanked (newlines kept, so line
/// numbers hold) and `#[cfg(test)]` items removed.
fn strip(text: &str) -> String {
    remove_test_items(&blank_comments_and_literals(text))
}

/// The text with comments, string and character literals blanked, newlines kept.
fn blank_comments_and_literals(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let blank = |b: u8| if b == b'\n' { b'\n' } else { b' ' };
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(bytes[i]));
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_len(rest) {
            out.extend(rest[..len].iter().map(|b| blank(*b)));
            i += len;
        } else if rest[0] == b'"' {
            out.push(b' ');
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                let step = if bytes[i] == b'\\' { 2 } else { 1 };
                for k in 0..step {
                    if let Some(b) = bytes.get(i + k) {
                        out.push(blank(*b));
                    }
                }
                i += step;
            }
            out.push(b' ');
            i += 1;
        } else if rest[0] == b'\'' && char_literal_len(rest).is_some() {
            let len = char_literal_len(rest).unwrap_or(1);
            out.extend(std::iter::repeat_n(b' ', len));
            i += len;
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `r"…"`, `r#"…"#`, `br"…"` and the like: their length, when one starts here.
fn raw_string_len(rest: &[u8]) -> Option<usize> {
    let start = if rest.starts_with(b"br") {
        2
    } else if rest.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = rest[start..].iter().take_while(|b| **b == b'#').count();
    if rest.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut end = Vec::with_capacity(hashes + 1);
    end.push(b'"');
    end.extend(std::iter::repeat_n(b'#', hashes));
    let body = start + hashes + 1;
    let close = rest[body..].windows(end.len()).position(|w| w == end)?;
    Some(body + close + end.len())
}

/// `'x'`, `'\n'`, `'\u{1F600}'`: a character literal (not a lifetime), and its length.
fn char_literal_len(rest: &[u8]) -> Option<usize> {
    if rest.get(1) == Some(&b'\\') {
        let close = rest[2..].iter().position(|b| *b == b'\'')?;
        return Some(close + 3);
    }
    let text = std::str::from_utf8(&rest[1..rest.len().min(6)])
        .ok()
        .or_else(|| {
            (2..6)
                .rev()
                .find_map(|n| std::str::from_utf8(&rest[1..rest.len().min(n)]).ok())
        })?;
    let ch = text.chars().next()?;
    let len = ch.len_utf8();
    (rest.get(1 + len) == Some(&b'\'')).then_some(len + 2)
}

/// Blanks every item that follows a `#[cfg(test)]` attribute.
fn remove_test_items(text: &str) -> String {
    let mut out = text.to_owned();
    for (start, end) in test_item_spans(text) {
        let blanked: String = out[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..end, &blanked);
    }
    out
}

/// Byte ranges of the items following `#[cfg(test)]` (to their closing brace or `;`), in a text
/// whose comments and literals are blanked.
fn test_item_spans(text: &str) -> Vec<(usize, usize)> {
    let marker = "#[cfg(test)]";
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(marker).map(|p| p + from) {
        let mut i = at + marker.len();
        let mut depth = 0usize;
        let mut end = bytes.len();
        while i < bytes.len() {
            match bytes[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        spans.push((at, end));
        from = end;
    }
    spans
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Punct(&'static str),
}

/// Identifiers (with `$crate`) and the punctuation a path is made of, with their lines.
fn tokens(code: &str) -> Vec<(usize, Token)> {
    let mut out = Vec::new();
    let mut line = 1;
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_alphabetic() || c == '_' || (c == '$' && chars.get(i + 1) == Some(&'c')) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, Token::Ident(chars[start..i].iter().collect())));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((line, Token::Punct("::")));
            i += 2;
        } else {
            let punct = match c {
                '{' => Some("{"),
                '}' => Some("}"),
                ',' => Some(","),
                ';' => Some(";"),
                '*' => Some("*"),
                _ => None,
            };
            if let Some(p) = punct {
                out.push((line, Token::Punct(p)));
            } else if !c.is_whitespace() {
                out.push((line, Token::Punct("other")));
            }
            i += 1;
        }
    }
    out
}

fn is_anchor(token: &Token) -> bool {
    matches!(token, Token::Ident(s) if s == "crate" || s == "$crate" || s == "super" || s == "self")
}

/// Every path starting at `crate`, `$crate`, `super` or `self`, with the line it is on:
/// `use` trees expanded, and inline paths.
fn references(code: &str) -> Vec<(usize, Vec<String>)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Ident(word) if word == "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|(_, t)| *t == Token::Punct(";"))
                    .map_or(tokens.len(), |p| p + i);
                let mut paths = Vec::new();
                use_tree(&tokens[i + 1..end], &[], &mut paths);
                for (line, path) in paths {
                    if path
                        .first()
                        .is_some_and(|s| is_anchor(&Token::Ident(s.clone())))
                    {
                        found.push((line, path));
                    }
                }
                i = end + 1;
            }
            token
                if is_anchor(token)
                    && tokens.get(i + 1).map(|t| &t.1) == Some(&Token::Punct("::")) =>
            {
                let line = tokens[i].0;
                let mut path = Vec::new();
                let mut j = i;
                while let Some((_, Token::Ident(segment))) = tokens.get(j) {
                    path.push(segment.clone());
                    if tokens.get(j + 1).map(|t| &t.1) != Some(&Token::Punct("::")) {
                        break;
                    }
                    j += 2;
                }
                found.push((line, path));
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    found
}

/// Expands a `use` tree (`a::{b, c::{self, d}}`) into full paths, with their lines.
fn use_tree(tokens: &[(usize, Token)], prefix: &[String], out: &mut Vec<(usize, Vec<String>)>) {
    let mut pos = 0;
    subtree(tokens, &mut pos, prefix, out);
}

fn subtree(
    tokens: &[(usize, Token)],
    pos: &mut usize,
    prefix: &[String],
    out: &mut Vec<(usize, Vec<String>)>,
) {
    let mut path = prefix.to_vec();
    loop {
        let Some((line, token)) = tokens.get(*pos) else {
            return;
        };
        match token {
            // `{self, …}` names the prefix itself.
            Token::Ident(word)
                if word == "self" && path.len() == prefix.len() && !prefix.is_empty() =>
            {
                *pos += 1;
            }
            Token::Ident(word) => {
                path.push(word.clone());
                *pos += 1;
            }
            Token::Punct("{") => {
                *pos += 1;
                loop {
                    if tokens.get(*pos).map(|t| &t.1) == Some(&Token::Punct("}")) {
                        *pos += 1;
                        return;
                    }
                    subtree(tokens, pos, &path, out);
                    match tokens.get(*pos).map(|t| &t.1) {
                        Some(Token::Punct(",")) => *pos += 1,
                        Some(Token::Punct("}")) => {
                            *pos += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            Token::Punct("*") => {
                *pos += 1;
                out.push((*line, path));
                return;
            }
            _ => return,
        }
        match tokens.get(*pos).map(|t| &t.1) {
            Some(Token::Punct("::")) => *pos += 1,
            Some(Token::Ident(word)) if word == "as" => {
                *pos += 2;
                out.push((*line, path));
                return;
            }
            _ => {
                out.push((*line, path));
                return;
            }
        }
    }
}

/// The module a path reaches from `module`: the longest known module prefix of it.
fn resolve(module: &ModPath, path: &[String], known: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base: ModPath = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate" | "$crate") => rest = &path[1..],
        Some("self") => {
            base = module.clone();
            rest = &path[1..];
        }
        Some("super") => {
            base = module.clone();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut target = base;
    for segment in rest {
        let mut next = target.clone();
        next.push(segment.clone());
        if known.contains(&next) {
            target = next;
        } else {
            break;
        }
    }
    Some(target)
}

/// Elementary cycles found by depth-first search, one per back edge, each closed (`a → b → a`).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, Edge>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, Edge>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        stack.push(node.to_owned());
        if let Some(next) = graph.get(node) {
            for to in next.keys() {
                if let Some(at) = stack.iter().position(|n| n == to) {
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(to.clone());
                    found.push(cycle);
                } else if !done.contains(to) {
                    visit(to, graph, stack, done, found);
                }
            }
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if !done.contains(node) {
            visit(node, graph, &mut Vec::new(), &mut done, &mut found);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(code: &str) -> Vec<String> {
        references(&strip(code))
            .into_iter()
            .map(|(_, p)| p.join("::"))
            .collect()
    }

    #[test]
    fn use_trees_and_inline_paths_are_found() {
        let code = "use crate::store::{self, Store, orders::{OrderRow as Row}};\n\
                    use super::auth::Caller;\nuse minipay_jobs::OrderStatus;\n\
                    fn f() { crate::worker::run(); let s = \"crate::http::x\"; } // crate::app\n\
                    #[cfg(test)]\nmod tests { use crate::config::Config; }\n";
        assert_eq!(
            paths(code),
            [
                "crate::store",
                "crate::store::Store",
                "crate::store::orders::OrderRow",
                "super::auth::Caller",
                "crate::worker::run"
            ]
        );
    }

    #[test]
    fn test_items_do_not_count_wherever_they_are() {
        let top = "#[cfg(test)]\nmod tests;\nfn a() {}\nfn b() {}\n";
        assert_eq!(production_lines(top), 2);
        let bottom = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n";
        assert_eq!(production_lines(bottom), 1);
    }

    #[test]
    fn lifetimes_are_not_character_literals() {
        let code = "fn f<'a>(x: &'a str) -> char { crate::a::b(); 'x' }";
        assert_eq!(paths(code), ["crate::a::b"]);
    }

    #[test]
    fn a_cycle_between_siblings_is_found_and_containment_is_not() {
        let known: BTreeSet<ModPath> = [
            vec![],
            vec!["a".into()],
            vec!["a".into(), "x".into()],
            vec!["b".into()],
        ]
        .into_iter()
        .collect();
        let from_child = resolve(
            &vec!["a".into(), "x".into()],
            &["super".into(), "Item".into()],
            &known,
        );
        assert_eq!(from_child, Some(vec!["a".to_owned()]));
        let edge = Edge {
            file: PathBuf::new(),
            line: 1,
            path: String::new(),
        };
        let mut graph: BTreeMap<String, BTreeMap<String, Edge>> = BTreeMap::new();
        graph
            .entry("a".into())
            .or_default()
            .insert("b".into(), edge.clone());
        assert!(cycles(&graph).is_empty());
        graph
            .entry("b".into())
            .or_default()
            .insert("a".into(), edge);
        assert_eq!(cycles(&graph), [vec!["a", "b", "a"]]);
    }
}
