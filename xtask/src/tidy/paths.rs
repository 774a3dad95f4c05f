//! The server's modules as tidy sees them: which module a file is, which modules it names
//! through `crate::`, `super::` and `self::` paths (use trees included), and the cycles among
//! them (Tarjan's strongly connected components).

use std::collections::{BTreeSet, HashMap};

use super::lex::Token;

/// A module path inside the server crate, without `crate`: `["audit", "log"]`.
pub type ModPath = Vec<String>;

/// Where the server's library crate lives.
pub const SERVER_SRC: &str = "server/src/";

/// The module a server source file is: `server/src/audit/log.rs` is `audit::log`,
/// `server/src/audit/mod.rs` is `audit`, `lib.rs` the crate root (empty). `None` for files
/// outside `server/src` and for `main.rs`, which is a crate of its own.
pub fn server_module(path: &str) -> Option<ModPath> {
    let rel = path.strip_prefix(SERVER_SRC)?.strip_suffix(".rs")?;
    if rel == "main" {
        return None;
    }
    let mut segments: ModPath = rel.split('/').map(str::to_owned).collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    Some(segments)
}

/// A path a file names, resolved to the crate root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub line: usize,
    pub path: ModPath,
}

impl Ref {
    /// `crate::a::b`, for messages.
    pub fn display(&self) -> String {
        std::iter::once("crate")
            .chain(self.path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("::")
    }
}

/// Every path that starts with `crate::`, `super::` or `self::` in a file of module `module`,
/// resolved against the inline modules (`mod tests { use super::*; }`) it sits in. A use
/// tree gives one reference per leaf.
pub fn crate_refs(tokens: &[Token], module: &[String]) -> Vec<Ref> {
    let mut refs = Vec::new();
    // Inline modules: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(token) = tokens.get(i) {
        let prev = |back: usize| i.checked_sub(back).and_then(|j| tokens.get(j));
        // Not the middle of a path, not `$crate`, not `pub(in crate::x)`.
        let starts_path = tokens.get(i + 1).is_some_and(|t| t.is("::"))
            && !prev(1).is_some_and(|t| t.is("::") || t.is("$"))
            && !(prev(1).is_some_and(|t| t.is("in")) && prev(2).is_some_and(|t| t.is("(")));
        match token.text.as_str() {
            "{" => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
            }
            "}" => {
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "mod" => {
                pending_mod = tokens
                    .get(i + 1)
                    .filter(|t| t.is_ident() && tokens.get(i + 2).is_some_and(|t| t.is("{")))
                    .map(|t| t.text.clone());
            }
            "crate" | "super" | "self" if starts_path => {
                let mut here: ModPath = module.to_vec();
                here.extend(inline.iter().map(|(name, _)| name.clone()));
                let base = match token.text.as_str() {
                    "crate" => Vec::new(),
                    "super" => here[..here.len().saturating_sub(1)].to_vec(),
                    _ => here,
                };
                let mut leaves = Vec::new();
                i = use_tree(tokens, i + 2, base, &mut leaves);
                refs.extend(leaves.into_iter().map(|path| Ref {
                    line: token.line,
                    path,
                }));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    refs
}

/// The leaves of the path or use tree from `i` (just after a `::`), appended to `prefix`.
/// Returns the index of the first token after it.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    mut prefix: ModPath,
    leaves: &mut Vec<ModPath>,
) -> usize {
    loop {
        let Some(token) = tokens.get(i) else {
            leaves.push(prefix);
            return i;
        };
        match token.text.as_str() {
            "{" => {
                i += 1;
                while let Some(token) = tokens.get(i) {
                    match token.text.as_str() {
                        "}" => return i + 1,
                        // `as alias` and separators: not part of any path.
                        "," | "as" => i += 1,
                        _ if token.is_ident() && tokens.get(i - 1).is_some_and(|t| t.is("as")) => {
                            i += 1
                        }
                        _ => {
                            let before = i;
                            i = use_tree(tokens, i, prefix.clone(), leaves);
                            // Anything else (a stray token) must still move us forward.
                            i = i.max(before + 1);
                        }
                    }
                }
                return i;
            }
            "*" => {
                leaves.push(prefix);
                return i + 1;
            }
            "super" => {
                prefix.pop();
            }
            // `{self, x}` names the prefix itself.
            "self" => {}
            _ if token.is_ident() => prefix.push(token.text.clone()),
            _ => {
                leaves.push(prefix);
                return i;
            }
        }
        i += 1;
        if !tokens.get(i).is_some_and(|t| t.is("::")) {
            leaves.push(prefix);
            return i;
        }
        i += 1;
    }
}

/// The crate root's re-exports: `pub use error::ServerError;` in `lib.rs` maps `ServerError`
/// to `error::ServerError`, so `crate::ServerError` counts as a use of `error`.
pub fn root_reexports(lib_tokens: &[Token]) -> HashMap<String, ModPath> {
    let mut map = HashMap::new();
    for (i, token) in lib_tokens.iter().enumerate() {
        // `pub use` or `pub(crate) use`.
        let is_pub_use =
            token.is("use") && i > 0 && (lib_tokens[i - 1].is("pub") || lib_tokens[i - 1].is(")"));
        if !is_pub_use {
            continue;
        }
        // In the root, `crate::x`, `self::x` and `x` are the same path.
        let explicit = lib_tokens
            .get(i + 1)
            .is_some_and(|t| t.is("crate") || t.is("self"))
            && lib_tokens.get(i + 2).is_some_and(|t| t.is("::"));
        let start = if explicit { i + 3 } else { i + 1 };
        let mut leaves = Vec::new();
        use_tree(lib_tokens, start, Vec::new(), &mut leaves);
        for leaf in leaves {
            if let Some(name) = leaf.last() {
                map.insert(name.clone(), leaf.clone());
            }
        }
    }
    map
}

/// `path` with a root re-export replaced by what it re-exports.
pub fn through_reexports(path: &[String], reexports: &HashMap<String, ModPath>) -> ModPath {
    match path.split_first() {
        Some((first, rest)) if reexports.contains_key(first) => {
            let mut full = reexports[first].clone();
            full.extend_from_slice(rest);
            full
        }
        _ => path.to_vec(),
    }
}

/// The longest prefix of `path` that is a module, the crate root not counted.
pub fn owning_module<'m>(path: &[String], modules: &'m BTreeSet<ModPath>) -> Option<&'m ModPath> {
    (1..=path.len())
        .rev()
        .find_map(|len| modules.get(&path[..len]))
}

/// The strongly connected components of a directed graph (Tarjan's algorithm), singletons
/// included: a component of two or more nodes is a cycle.
pub fn components(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct Tarjan<'e> {
        edges: &'e [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        found: Vec<Vec<usize>>,
    }

    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            let edges = self.edges;
            for &w in &edges[v] {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.found.push(component);
            }
        }
    }

    let n = edges.len();
    let mut tarjan = Tarjan {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if tarjan.index[v].is_none() {
            tarjan.visit(v);
        }
    }
    tarjan.found
}

#[cfg(test)]
mod tests {
    use super::super::lex::lex;
    use super::*;

    fn module(path: &str) -> ModPath {
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The references of `src` in module `at`, as `line:crate::path`.
    #[track_caller]
    fn check(at: &str, src: &str, expected: &[&str]) {
        let got: Vec<String> = crate_refs(&lex(src).tokens, &module(at))
            .iter()
            .map(|r| format!("{}:{}", r.line, r.display()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn files_map_to_modules() {
        assert_eq!(
            server_module("server/src/audit/log.rs"),
            Some(module("audit::log"))
        );
        assert_eq!(
            server_module("server/src/audit/mod.rs"),
            Some(module("audit"))
        );
        assert_eq!(server_module("server/src/lib.rs"), Some(module("")));
        assert_eq!(server_module("server/src/main.rs"), None);
        assert_eq!(server_module("server/tests/it/main.rs"), None);
    }

    #[test]
    fn use_trees_and_inline_paths_resolve() {
        check(
            "store::users",
            "use crate::{http::{self, router::X}, scope::*};\nlet x = crate::audit::log::f::<T>();",
            &[
                "1:crate::http",
                "1:crate::http::router::X",
                "1:crate::scope",
                "2:crate::audit::log::f",
            ],
        );
        check(
            "audit::log",
            "use super::key::Key as K;\nuse super::super::store;\nself::inner::g();",
            &[
                "1:crate::audit::key::Key",
                "2:crate::store",
                "3:crate::audit::log::inner::g",
            ],
        );
    }

    #[test]
    fn super_in_an_inline_module_is_the_file() {
        check(
            "audit::log",
            "fn f() {}\nmod tests {\n    use super::*;\n}\nuse super::x;",
            &["3:crate::audit::log", "5:crate::audit::x"],
        );
    }

    #[test]
    fn visibility_and_macro_paths_are_not_references() {
        check(
            "store",
            "pub(crate) fn f() {}\npub(in crate::store) fn g() {}\n$crate::x!();",
            &[],
        );
    }

    #[test]
    fn root_reexports_resolve() {
        let reexports = root_reexports(
            &lex("pub use error::ServerError;\npub use http::{router::build_router};").tokens,
        );
        assert_eq!(
            through_reexports(&module("build_router"), &reexports),
            module("http::router::build_router")
        );
        assert_eq!(
            through_reexports(&module("ServerError::X"), &reexports),
            module("error::ServerError::X")
        );
        assert_eq!(
            through_reexports(&module("store::Y"), &reexports),
            module("store::Y")
        );
    }

    #[test]
    fn tarjan_finds_cycles() {
        // 0 → 1 → 2 → 0, 2 → 3, 3 → 3, 4 alone.
        let edges = vec![vec![1], vec![2], vec![0, 3], vec![3], vec![]];
        let mut got: Vec<Vec<usize>> = components(&edges)
            .into_iter()
            .map(|mut c| {
                c.sort_unstable();
                c
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }
}
