//! The layering README's Layout section declares: every `crate::` path in
//! `src/` (and every `excite::` path in the binary) names a module of the same
//! layer or a lower one. The layers are read from README.md itself, so the
//! document and the check cannot disagree.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::root;

/// Layer of each top-level module, from README's ```layers block (one layer a
/// line, lowest first: `N name  module module …`).
fn declared_layers(readme: &str) -> BTreeMap<String, usize> {
    let block = readme
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```layers block in its Layout section");
    let mut layers = BTreeMap::new();
    for (rank, line) in block.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() >= 3 && words[0].parse::<usize>() == Ok(rank + 1), "README layers line `{line}`: write `N name module …`, numbered from 1");
        for module in &words[2..] {
            assert!(layers.insert(module.to_string(), rank).is_none(), "module `{module}` is in two layers");
        }
    }
    layers
}

/// `text` without comments, string and char literals (their contents are not imports).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) => {
                // raw string r"…" or r#"…"#
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                i += 2 + hashes;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\')) => {
                // a char literal ('x', '\n', '\''); lifetimes ('a) have no closing quote
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules `code` names through `root::` (`crate` or `excite`),
/// including each item of a `root::{a, b::c}` group.
fn named_modules(code: &str, root: &str) -> Vec<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let pat = format!("{root}::");
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&pat) {
        let before = rest[..at].chars().last();
        rest = &rest[at + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group.find(|c| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            });
            let inner = &group[..end.unwrap_or(group.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(inner[start..i].trim()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// Every import in `files` (path relative to `src/`, contents) that points to a
/// higher layer, as `file: module (layer) imports module (layer)`.
fn violations(files: &[(String, String)], layers: &BTreeMap<String, usize>) -> Vec<String> {
    let name = |l: usize| layers.iter().filter(|(_, &v)| v == l).map(|(k, _)| k.as_str()).collect::<Vec<_>>().join("/");
    let mut out = Vec::new();
    for (path, text) in files {
        let top = path.split(['/', '.']).next().unwrap_or_default();
        if top == "lib" {
            continue; // the crate root declares and re-exports every module
        }
        let Some(&own) = layers.get(top) else {
            out.push(format!("{path}: module `{top}` is in no layer of README's ```layers block"));
            continue;
        };
        let code = code_only(text);
        let binary = top == "main" || top == "commands";
        let mut named = named_modules(&code, if binary { "excite" } else { "crate" });
        if binary {
            named.retain(|m| layers.contains_key(m) || m == "Surrogate" || m == "Error");
        }
        // `super::super::x` from a file one level deep reaches the crate root
        let depth = path.matches('/').count() + usize::from(!path.ends_with("mod.rs"));
        let supers = format!("{}", "super::".repeat(depth));
        if depth > 0 && code.contains(&supers) {
            // (an inline `mod tests` is one level deeper: only module names count here)
            let escaped = named_modules(&code.replace(&supers, "crate::"), "crate");
            named.extend(escaped.into_iter().filter(|m| layers.contains_key(m)));
        }
        for m in named {
            if m == "Error" || m == "Surrogate" || m == "commands" {
                continue; // crate-root re-exports (error, bundle) and the binary's own modules
            }
            match layers.get(&m) {
                Some(&l) if l > own => out.push(format!("{path}: `{top}` (layer {} {}) imports `{m}` (layer {} {}), which is above it", own + 1, name(own), l + 1, name(l))),
                Some(_) => {}
                None => out.push(format!("{path}: imports `{m}`, which is in no layer of README's ```layers block")),
            }
        }
    }
    out
}

fn sources(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn every_import_points_down() {
    let layers = declared_layers(&std::fs::read_to_string(root().join("README.md")).unwrap());
    let mut files = Vec::new();
    sources(&root().join("src"), &root().join("src"), &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let bad = violations(&files, &layers);
    assert!(bad.is_empty(), "imports against the declared layering:\n{}", bad.join("\n"));
    // every top-level module of the library is in a layer, and no layer is empty
    for (path, _) in &files {
        let top = path.split(['/', '.']).next().unwrap();
        assert!(top == "lib" || layers.contains_key(top), "{path}");
    }
}

#[test]
fn the_check_fails_on_an_upward_import() {
    let layers = declared_layers("```layers\n1 support  fsio\n2 cell  cell\n3 solve  solve\n```\n");
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let ok = [
        file("solve/cpu.rs", "use crate::cell::{self, Model};\nuse crate::{fsio, solve::x};"),
        file("cell/mod.rs", "// use crate::solve::x;\nconst S: &str = \"crate::solve\";\nfn f<'a>(c: char) -> bool { c == '\"' }\nuse crate::fsio;"),
    ];
    assert!(violations(&ok, &layers).is_empty(), "{:?}", violations(&ok, &layers));
    let up = [file("cell/mod.rs", "use crate::{fsio, solve::cpu};")];
    let v = violations(&up, &layers);
    assert!(v.len() == 1 && v[0].contains("`cell`") && v[0].contains("`solve`"), "{v:?}");
    let nested = [file("cell/models/fhn.rs", "use super::super::super::solve::cpu;")];
    assert_eq!(violations(&nested, &layers).len(), 1);
    let inline_tests = [file("fsio.rs", "fn f() {}\nmod tests { fn g() { super::f() } }")];
    assert!(violations(&inline_tests, &layers).is_empty());
    let unknown = [file("cell/mod.rs", "fn f() { crate::sweep::run() }")];
    assert!(violations(&unknown, &layers)[0].contains("no layer"));
}
