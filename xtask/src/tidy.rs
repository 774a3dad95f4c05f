//! `cargo xtask tidy`: the layering rules of ARCHITECTURE.md, checked by reading the source
//! as text. No compiler and no dependency, so it runs in a second and can be a `#[test]`
//! (`tests::tidy`), which makes `cargo test` fail on a violation.
//!
//! Code rules look at the source with comments and string contents blanked out ([`lex`]), so
//! a doc link or a message naming `crate::http` is not a use of it; the SQL rule alone reads
//! the strings. Each rule has a unit test over a snippet showing it fails and passes.
//!
//! The rules' tables are the constants below. A step of a restructuring may leave known
//! debt: `xtask/tidy-allow.txt` tolerates exactly N violations of a rule in a file, no more
//! (a new one fails) and no fewer (a paid one must lower the count).

mod lex;
mod paths;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};

use lex::{Lexed, Token};
use paths::{ModPath, Ref};

/// Where each proof constructor may be called: (type, associated fn, files). A path ending
/// in `/` is a directory. Test code outside `src` is exempt ([`SCOPE_EXEMPT`]).
const CONSTRUCTORS: &[(&str, &str, &[&str])] = &[
    (
        "ClinicScope",
        "of_principal",
        &["server/src/http/authorize.rs", "server/src/audit/access.rs"],
    ),
    (
        "ClinicScope",
        "of_signed_batch",
        &["server/src/audit/batch.rs"],
    ),
    ("ClinicScope", "of_enrollment", &["server/src/devices/"]),
    // A live workstation's own clinic, for its recovery key while it signs in.
    (
        "ClinicScope",
        "of_workstation",
        &["server/src/sign_in/password.rs"],
    ),
    ("ClinicScope", "of_mfa_ticket", &["server/src/sign_in/"]),
    (
        "ClinicScope",
        "of_attempted_account",
        &["server/src/audit/sign_in.rs"],
    ),
    (
        "ClinicScope",
        "of_new_clinic",
        &["server/src/admin/provisioning.rs"],
    ),
    // Its input is a `Console`, whose own constructor is the one restricted below.
    ("ClinicScope", "of_console", &["server/src/"]),
    (
        "Console",
        "operator",
        &[
            "server/src/main.rs",
            "server/src/admin/operator.rs",
            "server/src/admin/seed.rs",
            "server/src/audit/synthetic.rs",
            "server/src/audit/log.rs",
            "server/src/state.rs",
        ],
    ),
];

/// `ClinicScope`'s associated fns that build nothing; any other one must be in the table.
const SCOPE_ACCESSORS: &[&str] = &["clinic_id"];

/// The one file that may write a `ClinicScope { .. }` literal.
const SCOPE_HOME: &str = "server/src/scope.rs";

/// Test code, which builds scopes to set up what it checks.
const SCOPE_EXEMPT: &[&str] = &["server/tests/", "tests/", "bench/"];

/// The largest cycle among the server's modules (edges: `crate::`, `super::` and `self::`
/// paths), as measured on the restructured tree: it may shrink, never grow. `cargo xtask
/// tidy` prints today's figure; lower this to it as cycles are broken.
const MAX_SERVER_CYCLE: usize = 7;

/// The server's domain modules (first path segment): no axum, no `crate::http`.
const DOMAIN_MODULES: &[&str] = &[
    "sign_in", "session", "devices", "clinical", "admin", "audit", "secrets",
];

/// What `store` may name of the crate; any other top-level module is off limits.
const STORE_MAY_USE: &[&str] = &["error", "scope", "time", "store"];

/// A string literal starting with one of these (uppercase, then whitespace or `;`) is SQL.
const SQL_KEYWORDS: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE", "ALTER", "DROP", "BEGIN", "COMMIT",
    "ROLLBACK", "SET ROLE",
];

/// sqlx's entry points for running SQL (besides `sqlx::query` itself).
const SQL_CALLS: &[&str] = &[
    "query_scalar",
    "query_as",
    "query_with",
    "query_as_with",
    "query_scalar_with",
    "raw_sql",
    "AssertSqlSafe",
];

/// Where the wall clock may be read, besides any `clock.rs` of the app: the server's clock
/// and measurement or harness code.
const WALL_CLOCK_HOMES: &[&str] = &[
    "server/src/time.rs",
    "server/tests/",
    "bench/",
    "tests/",
    "xtask/",
];

/// The app's Tauri shell: the only files that may name `tauri::`.
const TAURI_SHELL: &[&str] = &[
    "src-tauri/src/commands.rs",
    "src-tauri/src/main.rs",
    "src-tauri/src/lib.rs",
];

/// The app's folders, each with the folders it may import (`crate::<folder>`). The root's
/// own files (`error`, `config`, `files`, ...) are open to every folder; of the root files,
/// only the shell may name `crate::core`.
const APP_FOLDERS: &[(&str, &[&str])] = &[
    ("core", &["core", "local", "secrets", "net", "os"]),
    ("local", &["local", "secrets"]),
    ("secrets", &["secrets"]),
    ("net", &["net"]),
    ("os", &["os"]),
];

/// Source roots whose every file opens with a `//!` comment.
const DOC_ROOTS: &[&str] = &[
    "server/src/",
    "src-tauri/src/",
    "ui/src/",
    "protocol/src/",
    "xtask/src/",
];

const ALLOWLIST: &str = "xtask/tidy-allow.txt";
const ARCHITECTURE: &str = "ARCHITECTURE.md";

/// Directories never read.
const SKIP_DIRS: &[&str] = &["target", "node_modules"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    StoreImports,
    DomainImports,
    SqlOutsideStore,
    ClinicScope,
    WallClock,
    StorePool,
    ModuleDocs,
    InvariantTests,
    /// A test named in the evidence mapping (`tests/safeguards.toml`) that does not exist.
    EvidenceTests,
    Cycles,
    AppLayering,
    /// A line of `xtask/tidy-allow.txt` that is malformed or no longer matches.
    Allowlist,
}

impl Rule {
    const ALL: [Rule; 12] = [
        Rule::StoreImports,
        Rule::DomainImports,
        Rule::SqlOutsideStore,
        Rule::ClinicScope,
        Rule::WallClock,
        Rule::StorePool,
        Rule::ModuleDocs,
        Rule::InvariantTests,
        Rule::EvidenceTests,
        Rule::Cycles,
        Rule::AppLayering,
        Rule::Allowlist,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::StoreImports => "store-imports",
            Rule::DomainImports => "domain-imports",
            Rule::SqlOutsideStore => "sql-outside-store",
            Rule::ClinicScope => "clinic-scope",
            Rule::WallClock => "wall-clock",
            Rule::StorePool => "store-pool",
            Rule::ModuleDocs => "module-docs",
            Rule::InvariantTests => "invariant-tests",
            Rule::EvidenceTests => "evidence-tests",
            Rule::Cycles => "cycles",
            Rule::AppLayering => "app-layering",
            Rule::Allowlist => "allowlist",
        }
    }

    /// Whether the allowlist may tolerate it: the cycle bound is its own constant, and the
    /// allowlist cannot excuse itself.
    fn allowable(self) -> bool {
        !matches!(self, Rule::Cycles | Rule::Allowlist)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub path: String,
    /// 0 when the violation is about the file (or directory) as a whole.
    pub line: usize,
    pub rule: Rule,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: ", self.path)?,
            line => write!(f, "{}:{line}: ", self.path)?,
        }
        write!(f, "[{}] {}", self.rule.name(), self.message)
    }
}

#[derive(Debug)]
pub struct Report {
    pub violations: Vec<Violation>,
    /// Violations the allowlist accounts for exactly.
    pub tolerated: usize,
    /// The largest cycle among the server's modules (empty if there is none).
    pub largest_cycle: Vec<String>,
    pub max_cycle: usize,
}

impl Report {
    /// Allowlist lines for today's violations, for whoever integrates a step that leaves debt
    /// (each still needs its reason).
    pub fn allowlist_draft(&self) -> String {
        let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for v in self.violations.iter().filter(|v| v.rule.allowable()) {
            *counts.entry((v.rule.name(), v.path.as_str())).or_default() += 1;
        }
        counts
            .iter()
            .map(|((rule, path), n)| {
                format!("{rule} {path} {n}  # TODO: why, and which step pays it\n")
            })
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.violations {
            writeln!(f, "{v}")?;
        }
        match self.largest_cycle.len() {
            0 => writeln!(f, "server modules: no cycle")?,
            n => writeln!(
                f,
                "server modules: the largest cycle has {n} modules (MAX_SERVER_CYCLE = {}): {}",
                self.max_cycle,
                self.largest_cycle.join(", ")
            )?,
        }
        let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
        for v in &self.violations {
            *by_rule.entry(v.rule.name()).or_default() += 1;
        }
        let by_rule: Vec<String> = by_rule.iter().map(|(r, n)| format!("{r} {n}")).collect();
        write!(f, "tidy: {} violations", self.violations.len())?;
        if !by_rule.is_empty() {
            write!(f, " ({})", by_rule.join(", "))?;
        }
        writeln!(f, "; {} tolerated by {ALLOWLIST}", self.tolerated)
    }
}

/// Checks the workspace at `root`. Errors only when the tree cannot be read.
pub fn run(root: &Path) -> Result<Report> {
    Ok(check(&Sources::read(root)?, MAX_SERVER_CYCLE))
}

/// What tidy reads: every `.rs` file, ARCHITECTURE.md and the allowlist.
pub struct Sources {
    files: Vec<SourceFile>,
    architecture: Option<String>,
    allowlist: Option<String>,
    /// The evidence mapping's text, when the tree has one.
    safeguards: Option<String>,
}

struct SourceFile {
    /// Relative to the root, `/`-separated.
    path: String,
    text: String,
    lexed: Lexed,
    /// Its module, for a file of the server's library.
    module: Option<ModPath>,
}

impl Sources {
    pub fn read(root: &Path) -> Result<Self> {
        let mut files = Vec::new();
        walk(root, root, &mut files)?;
        let optional = |name: &str| -> Result<Option<String>> {
            match std::fs::read_to_string(root.join(name)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {name}")),
            }
        };
        let mut sources = Self::new(files, optional(ARCHITECTURE)?, optional(ALLOWLIST)?);
        sources.safeguards = optional(crate::evidence::MAPPING)?;
        Ok(sources)
    }

    fn new(
        files: Vec<(String, String)>,
        architecture: Option<String>,
        allowlist: Option<String>,
    ) -> Self {
        let mut files: Vec<SourceFile> = files
            .into_iter()
            .map(|(path, text)| SourceFile {
                lexed: lex::lex(&text),
                module: paths::server_module(&path),
                path,
                text,
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            files,
            architecture,
            allowlist,
            safeguards: None,
        }
    }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Not following symlinks: the tree is what git holds.
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() && !name.starts_with('.') && !SKIP_DIRS.contains(&&*name) {
            walk(root, &path, files)?;
        } else if kind.is_file() && name.ends_with(".rs") {
            let rel: Vec<String> = path
                .strip_prefix(root)?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.push((rel.join("/"), text));
        }
    }
    Ok(())
}

/// Every rule over `sources`, then the allowlist.
pub fn check(sources: &Sources, max_cycle: usize) -> Report {
    let mut found = Vec::new();
    let reexports = sources
        .files
        .iter()
        .find(|f| f.module.as_ref().is_some_and(Vec::is_empty))
        .map(|lib| paths::root_reexports(&lib.lexed.tokens))
        .unwrap_or_default();
    let top_modules: BTreeSet<&str> = sources
        .files
        .iter()
        .filter_map(|f| f.module.as_deref().map(top))
        .filter(|m| !m.is_empty())
        .collect();
    let mut server_refs: Vec<(&ModPath, Vec<Ref>)> = Vec::new();
    for file in &sources.files {
        let mut out = Found {
            file,
            found: &mut found,
        };
        if let Some(module) = &file.module {
            let refs: Vec<Ref> = paths::crate_refs(&file.lexed.tokens, module)
                .into_iter()
                .map(|r| Ref {
                    path: paths::through_reexports(&r.path, &reexports),
                    ..r
                })
                .collect();
            store_imports(module, &refs, &top_modules, &mut out);
            domain_imports(module, &refs, &mut out);
            store_pool(module, &mut out);
            server_refs.push((module, refs));
        }
        sql_outside_store(&mut out);
        clinic_scope(&mut out);
        wall_clock(&mut out);
        module_docs(&mut out);
        app_layering(&mut out);
    }
    invariant_tests(sources, &mut found);
    evidence_tests(sources, &mut found);
    let largest_cycle = cycles(&server_refs, max_cycle, &mut found);
    let tolerated = apply_allowlist(sources.allowlist.as_deref(), &mut found);
    found.sort();
    Report {
        violations: found,
        tolerated,
        largest_cycle,
        max_cycle,
    }
}

/// The file a rule is looking at, and where its findings go.
struct Found<'a> {
    file: &'a SourceFile,
    found: &'a mut Vec<Violation>,
}

impl Found<'_> {
    fn push(&mut self, rule: Rule, line: usize, message: String) {
        self.found.push(Violation {
            path: self.file.path.clone(),
            line,
            rule,
            message,
        });
    }

    fn tokens(&self) -> &[Token] {
        &self.file.lexed.tokens
    }

    fn is_in(&self, places: &[&str]) -> bool {
        is_in(&self.file.path, places)
    }
}

/// Whether `path` is one of `places` (a place ending in `/` is a directory).
fn is_in(path: &str, places: &[&str]) -> bool {
    places.iter().any(|p| {
        if p.ends_with('/') {
            path.starts_with(p)
        } else {
            path == *p
        }
    })
}

/// The top-level module a module path is in (`""` for the root).
fn top(module: &[String]) -> &str {
    module.first().map_or("", String::as_str)
}

/// Whether tokens `i`, `i + 1`, `i + 2` are `a :: b` (`b` empty: any identifier).
fn path_at(tokens: &[Token], i: usize, a: &str, b: &str) -> Option<String> {
    let name = tokens.get(i + 2)?;
    let hit = tokens[i].is(a)
        && tokens.get(i + 1)?.is("::")
        && name.is_ident()
        && (b.is_empty() || name.is(b));
    hit.then(|| name.text.clone())
}

/// Rule 1: the store names no other layer. `top_modules` are the server's top-level modules
/// (any of them not allowed is forbidden, so a module added later is off limits too).
fn store_imports(
    module: &[String],
    refs: &[Ref],
    top_modules: &BTreeSet<&str>,
    out: &mut Found<'_>,
) {
    if top(module) != "store" {
        return;
    }
    let mut seen = HashSet::new();
    for r in refs {
        let target = top(&r.path);
        let layer = target == "http" || target == "state" || DOMAIN_MODULES.contains(&target);
        let forbidden = (layer || top_modules.contains(target)) && !STORE_MAY_USE.contains(&target);
        if forbidden && seen.insert((r.line, target.to_owned())) {
            out.push(
                Rule::StoreImports,
                r.line,
                format!(
                    "`{}`: the store may name only crate::{{{}}}",
                    r.display(),
                    STORE_MAY_USE.join(", ")
                ),
            );
        }
    }
}

/// Rule 2: only `http` (and the crate roots) name `crate::http`; domain code names no axum.
fn domain_imports(module: &[String], refs: &[Ref], out: &mut Found<'_>) {
    let layer = top(module);
    // The store has its own, stricter rule; the root wires the layers together.
    if !module.is_empty() && layer != "http" && layer != "store" {
        let mut lines = HashSet::new();
        for r in refs.iter().filter(|r| top(&r.path) == "http") {
            if lines.insert(r.line) {
                out.push(
                    Rule::DomainImports,
                    r.line,
                    format!(
                        "`{}`: only http/, main.rs and lib.rs name crate::http",
                        r.display()
                    ),
                );
            }
        }
    }
    if DOMAIN_MODULES.contains(&layer) {
        let lines: BTreeSet<usize> = out
            .tokens()
            .iter()
            .filter(|t| t.is("axum"))
            .map(|t| t.line)
            .collect();
        for line in lines {
            out.push(
                Rule::DomainImports,
                line,
                format!("`axum` in domain module `{layer}`: axum belongs in http/"),
            );
        }
    }
}

/// Rule 3: SQL only in the store.
fn sql_outside_store(out: &mut Found<'_>) {
    let in_server = out.file.path.starts_with(paths::SERVER_SRC);
    let in_store = out
        .file
        .module
        .as_deref()
        .is_some_and(|m| top(m) == "store");
    if !in_server || in_store {
        return;
    }
    let mut hits: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let tokens = out.tokens();
    for (i, token) in tokens.iter().enumerate() {
        let is_call = SQL_CALLS.contains(&token.text.as_str())
            || path_at(tokens, i, "sqlx", "query").is_some();
        if is_call {
            let name = if token.is("sqlx") {
                "sqlx::query"
            } else {
                &token.text
            };
            hits.entry(token.line)
                .or_default()
                .push(format!("`{name}`"));
        }
    }
    for s in &out.file.lexed.strings {
        if let Some(keyword) = sql_keyword(&s.text) {
            hits.entry(s.line)
                .or_default()
                .push(format!("a \"{keyword} …\" string"));
        }
    }
    for (line, what) in hits {
        out.push(
            Rule::SqlOutsideStore,
            line,
            format!("{}: SQL belongs in store/", what.join(", ")),
        );
    }
}

/// The SQL keyword a string starts with, if it does.
fn sql_keyword(text: &str) -> Option<&'static str> {
    let text = text.trim_start();
    SQL_KEYWORDS.iter().copied().find(|keyword| {
        text.strip_prefix(keyword)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_whitespace() || c == ';'))
    })
}

/// Rule 4: each proof is built only where its verified input is.
fn clinic_scope(out: &mut Found<'_>) {
    if out.is_in(SCOPE_EXEMPT) {
        return;
    }
    let mut hits = Vec::new();
    let tokens = out.tokens();
    for (i, token) in tokens.iter().enumerate() {
        if token.is("ClinicScope")
            && tokens.get(i + 1).is_some_and(|t| t.is("{"))
            && out.file.path != SCOPE_HOME
            && !is_type_position(tokens, i)
        {
            hits.push((
                token.line,
                format!("a `ClinicScope {{ .. }}` literal: only {SCOPE_HOME} builds one directly"),
            ));
        }
        let Some((ty, name)) = ["ClinicScope", "Console"]
            .iter()
            .find_map(|ty| path_at(tokens, i, ty, "").map(|name| (*ty, name)))
        else {
            continue;
        };
        let entry = CONSTRUCTORS.iter().find(|(t, f, _)| *t == ty && *f == name);
        match entry {
            Some((_, _, places)) if !is_in(&out.file.path, places) => hits.push((
                token.line,
                format!("`{ty}::{name}` outside {}", places.join(", ")),
            )),
            None if ty == "ClinicScope" && !SCOPE_ACCESSORS.contains(&name.as_str()) => {
                hits.push((
                    token.line,
                    format!(
                        "`ClinicScope::{name}` is not in tidy's constructor table: add it to \
                         CONSTRUCTORS with the files that hold its verified input"
                    ),
                ));
            }
            _ => {}
        }
    }
    for (line, message) in hits {
        out.push(Rule::ClinicScope, line, message);
    }
}

/// Whether the type name at `i` is followed by a body rather than fields: `impl ClinicScope {`,
/// `struct ClinicScope {`, `-> &'a crate::scope::ClinicScope {`.
fn is_type_position(tokens: &[Token], i: usize) -> bool {
    let mut j = i;
    // Back over a path prefix, then a reference with its lifetime and `mut`.
    while j >= 2 && tokens[j - 1].is("::") && tokens[j - 2].is_ident() {
        j -= 2;
    }
    loop {
        match j.checked_sub(1).map(|k| &tokens[k]) {
            Some(t) if t.is("&") || t.is("mut") => j -= 1,
            Some(t) if t.is_ident() && j >= 2 && tokens[j - 2].is("'") => j -= 2,
            Some(t) => {
                return ["->", "impl", "struct", "enum", "union", "for", "trait"]
                    .contains(&t.text.as_str());
            }
            None => return false,
        }
    }
}

/// Rule 5: the wall clock is read in the clock modules only.
fn wall_clock(out: &mut Found<'_>) {
    let path = &out.file.path;
    let app_clock = path.starts_with("src-tauri/src/") && path.ends_with("/clock.rs");
    if app_clock || out.is_in(WALL_CLOCK_HOMES) {
        return;
    }
    let tokens = out.tokens();
    let lines: BTreeSet<usize> = (0..tokens.len())
        .filter(|&i| path_at(tokens, i, "SystemTime", "now").is_some())
        .map(|i| tokens[i].line)
        .collect();
    for line in lines {
        out.push(
            Rule::WallClock,
            line,
            "`SystemTime::now` outside the clock modules: take a Clock (server/src/time.rs) \
             or the app's clock.rs"
                .to_owned(),
        );
    }
}

/// Rule 6: the store does not hand its pool to the crate.
fn store_pool(module: &[String], out: &mut Found<'_>) {
    if top(module) != "store" {
        return;
    }
    let tokens = out.tokens();
    let is = |j: usize, text: &str| tokens.get(j).is_some_and(|t| t.is(text));
    let mut hits = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !token.is("pub") {
            continue;
        }
        let mut j = i + 1;
        if is(j, "(") {
            // `pub(super)`, `pub(self)` and `pub(in …)` stay inside the store.
            if !(is(j + 1, "crate") && is(j + 2, ")")) {
                continue;
            }
            j += 3;
        }
        while ["const", "async", "unsafe", "extern", "\""]
            .iter()
            .any(|q| is(j, q))
        {
            j += 1;
        }
        if !is(j, "fn") {
            continue;
        }
        let name = tokens.get(j + 1).map_or("", |t| t.text.as_str());
        j = skip_balanced(tokens, j + 2, "<", ">");
        j = skip_balanced(tokens, j, "(", ")");
        if !is(j, "->") {
            continue;
        }
        let returned: Vec<&str> = tokens[j + 1..]
            .iter()
            .map(|t| t.text.as_str())
            .take_while(|t| !matches!(*t, "{" | ";" | "where"))
            .collect();
        let pool = returned.contains(&"AnyPool")
            || returned.contains(&"Pool") && returned.contains(&"Any");
        if pool {
            hits.push((
                token.line,
                format!(
                    "`{name}` hands out the pool (`-> {}`): keep it `pub(super)` or private, \
                     so every query goes through a store method",
                    returned.join("")
                ),
            ));
        }
    }
    for (line, message) in hits {
        out.push(Rule::StorePool, line, message);
    }
}

/// The index after a balanced `open … close` group at `i`, or `i` if none starts there.
fn skip_balanced(tokens: &[Token], i: usize, open: &str, close: &str) -> usize {
    if !tokens.get(i).is_some_and(|t| t.is(open)) {
        return i;
    }
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(i) {
        if t.is(open) {
            depth += 1;
        } else if t.is(close) {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
    }
    tokens.len()
}

/// Rule 7: every module says what it is for, first thing.
fn module_docs(out: &mut Found<'_>) {
    if !out.is_in(DOC_ROOTS) {
        return;
    }
    // Inside a `#![…]` that spans lines: its open bracket count.
    let mut open = 0i64;
    let bracket_balance =
        |line: &str| line.matches('[').count() as i64 - line.matches(']').count() as i64;
    let mut first_code = None;
    for (n, line) in out.file.text.lines().enumerate() {
        let line = line.trim();
        if open > 0 {
            open += bracket_balance(line);
        } else if line.starts_with("#![") {
            open = bracket_balance(line);
        } else if !line.is_empty() {
            if line.starts_with("//!") {
                return;
            }
            first_code = Some(n + 1);
            break;
        }
    }
    out.push(
        Rule::ModuleDocs,
        first_code.unwrap_or(1),
        "the file does not open with a `//!` comment saying what the module is for".to_owned(),
    );
}

/// Rule 10: the app's Tauri shell is commands.rs (with main.rs and lib.rs), and the app's
/// folders import downwards only (`APP_FOLDERS`).
fn app_layering(out: &mut Found<'_>) {
    let Some(rest) = out.file.path.strip_prefix("src-tauri/src/") else {
        return;
    };
    app_folders(out, rest.split_once('/').map(|(folder, _)| folder));
    if out.is_in(TAURI_SHELL) {
        return;
    }
    let tokens = out.tokens();
    let lines: BTreeSet<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            let tauri = t.is("tauri") || t.text.starts_with("tauri_plugin");
            let starts_path = !(*i > 0 && tokens[i - 1].is("::"));
            tauri && starts_path && tokens.get(i + 1).is_some_and(|t| t.is("::"))
        })
        .map(|(_, t)| t.line)
        .collect();
    for line in lines {
        out.push(
            Rule::AppLayering,
            line,
            format!(
                "`tauri::` outside the shell ({}): the core stays plain Rust",
                TAURI_SHELL.join(", ")
            ),
        );
    }
}

/// The folder half of rule 10: `crate::<folder>` only for the folders `folder` may import
/// (`None`: a root file, which may import any folder but `core`, unless it is the shell).
fn app_folders(out: &mut Found<'_>, folder: Option<&str>) {
    let allowed: Option<&[&str]> = match folder {
        Some(f) => APP_FOLDERS
            .iter()
            .find(|(name, _)| *name == f)
            .map(|(_, allowed)| *allowed),
        None => None,
    };
    let shell = out.is_in(TAURI_SHELL);
    let tokens = out.tokens();
    // Each `crate::x` names its first segment; `crate::{a::b, c}` names `a` and `c`.
    let mut named = Vec::new();
    for (i, w) in tokens.windows(3).enumerate() {
        if !(w[0].is("crate") && w[1].is("::")) {
            continue;
        }
        if !w[2].is("{") {
            named.push(&w[2]);
            continue;
        }
        let mut depth = 0usize;
        for (j, t) in tokens.iter().enumerate().skip(i + 2) {
            if t.is("{") {
                depth += 1;
            } else if t.is("}") {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            } else if depth == 1 && (tokens[j - 1].is("{") || tokens[j - 1].is(",")) {
                named.push(t);
            }
        }
    }
    let mut found = Vec::new();
    for token in named {
        let target = token.text.as_str();
        let is_folder = APP_FOLDERS.iter().any(|(name, _)| *name == target);
        let refused = match (folder, allowed) {
            (Some(_), Some(allowed)) => is_folder && !allowed.contains(&target),
            // A file in a folder tidy does not know: it has no place in the order yet.
            (Some(_), None) => is_folder,
            (None, _) => target == "core" && !shell,
        };
        if refused {
            found.push((token.line, target.to_owned()));
        }
    }
    for (line, target) in found {
        let from = folder.map_or("the crate root".to_owned(), |f| format!("`{f}/`"));
        out.push(
            Rule::AppLayering,
            line,
            format!("{from} imports `crate::{target}`, above it in the app's folder order"),
        );
    }
}

/// Rule 8: every Architecture Invariant names tests, and they exist.
fn invariant_tests(sources: &Sources, found: &mut Vec<Violation>) {
    let mut push = |line: usize, message: String| {
        found.push(Violation {
            path: ARCHITECTURE.to_owned(),
            line,
            rule: Rule::InvariantTests,
            message,
        })
    };
    let Some(text) = &sources.architecture else {
        push(
            0,
            "missing: tidy checks that its invariants name tests".to_owned(),
        );
        return;
    };
    let fns: HashSet<&str> = sources
        .files
        .iter()
        .flat_map(|f| f.lexed.tokens.windows(2))
        .filter(|w| w[0].is("fn") && w[1].is_ident())
        .map(|w| w[1].text.as_str())
        .collect();
    for (start, paragraph) in paragraphs(text) {
        if !paragraph.starts_with("**Architecture Invariant:**") {
            continue;
        }
        let flat = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        let by_tidy = flat.contains("Checked by `cargo xtask tidy`");
        let marker = ["Test:", "Tests:"]
            .iter()
            .filter_map(|m| paragraph.find(m))
            .min();
        let names = marker
            .map(|at| test_names(&paragraph, at))
            .unwrap_or_default();
        if names.is_empty() && !by_tidy {
            push(
                start,
                "an Architecture Invariant names no test (\"Tests: `name`\", or \"Checked by \
                 `cargo xtask tidy`\")"
                    .to_owned(),
            );
        }
        for (offset, name) in names {
            if !fns.contains(name) {
                let line = start + paragraph[..offset].matches('\n').count();
                push(
                    line,
                    format!("`{name}` is named as a test but no `fn {name}` exists"),
                );
            }
        }
    }
}

/// Rule 8b: every test the evidence mapping names exists in its package, so the report's
/// "passed" can never come from a test that was renamed away.
fn evidence_tests(sources: &Sources, found: &mut Vec<Violation>) {
    let Some(text) = &sources.safeguards else {
        return;
    };
    let mut push = |line: usize, message: String| {
        found.push(Violation {
            path: crate::evidence::MAPPING.to_owned(),
            line,
            rule: Rule::EvidenceTests,
            message,
        })
    };
    let named = match crate::evidence::tests_named(text) {
        Ok(named) => named,
        Err(e) => {
            push(0, format!("unreadable: {e:#}"));
            return;
        }
    };
    for id in named {
        let line = text
            .lines()
            .position(|l| l.contains(&id.path))
            .map_or(0, |n| n + 1);
        let Some(dir) = id.package_dir() else {
            push(
                line,
                format!("`{}` is not a package of this workspace", id.package),
            );
            continue;
        };
        let exists = sources
            .files
            .iter()
            .filter(|f| f.path.starts_with(&format!("{dir}/")))
            .flat_map(|f| f.lexed.tokens.windows(2))
            .any(|w| w[0].is("fn") && w[1].text == id.function());
        if !exists {
            push(
                line,
                format!(
                    "`{}` is named as a test but no `fn {}` exists in {dir}/",
                    id.path,
                    id.function()
                ),
            );
        }
    }
}

/// The paragraphs of a Markdown text with their first line numbers.
fn paragraphs(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut current, line.trim().is_empty()) {
            (Some(_), true) => out.extend(current.take()),
            (Some((_, p)), false) => {
                p.push('\n');
                p.push_str(line);
            }
            (None, false) => current = Some((n + 1, line.to_owned())),
            (None, true) => {}
        }
    }
    out.extend(current);
    out
}

/// The backticked names after `from` that look like test functions: snake_case with at
/// least one underscore (a single word such as `trail` is a term, not a test). With the
/// byte offset of each.
fn test_names(paragraph: &str, from: usize) -> Vec<(usize, &str)> {
    let mut names = Vec::new();
    let mut offset = from;
    for (k, piece) in paragraph[from..].split('`').enumerate() {
        let looks_like_fn = piece.contains('_')
            && piece.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && piece
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if k % 2 == 1 && looks_like_fn {
            names.push((offset, piece));
        }
        offset += piece.len() + 1;
    }
    names
}

/// Rule 9: the server's module graph, its largest cycle, and the bound on it.
fn cycles(server: &[(&ModPath, Vec<Ref>)], max: usize, found: &mut Vec<Violation>) -> Vec<String> {
    let modules: BTreeSet<ModPath> = server
        .iter()
        .map(|(m, _)| (*m).clone())
        .filter(|m| !m.is_empty())
        .collect();
    let index: HashMap<&ModPath, usize> = modules.iter().enumerate().map(|(i, m)| (m, i)).collect();
    let mut edges = vec![BTreeSet::new(); modules.len()];
    for (module, refs) in server {
        let Some(&from) = index.get(module) else {
            continue;
        };
        for r in refs {
            let to = paths::owning_module(&r.path, &modules).and_then(|m| index.get(m));
            if let Some(&to) = to.filter(|&&to| to != from) {
                edges[from].insert(to);
            }
        }
    }
    let edges: Vec<Vec<usize>> = edges.into_iter().map(|e| e.into_iter().collect()).collect();
    let names: Vec<String> = modules.iter().map(|m| m.join("::")).collect();
    let mut cycles: Vec<Vec<String>> = paths::components(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut members: Vec<String> = c.iter().map(|&i| names[i].clone()).collect();
            members.sort();
            members
        })
        .collect();
    cycles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    for cycle in cycles.iter().filter(|c| c.len() > max) {
        found.push(Violation {
            path: paths::SERVER_SRC.trim_end_matches('/').to_owned(),
            line: 0,
            rule: Rule::Cycles,
            message: format!(
                "a cycle of {} modules, over MAX_SERVER_CYCLE = {max} (xtask/src/tidy.rs): {}",
                cycle.len(),
                cycle.join(", ")
            ),
        });
    }
    cycles.into_iter().next().unwrap_or_default()
}

/// One line of the allowlist.
struct Allowance {
    line: usize,
    rule: Rule,
    path: String,
    count: usize,
}

/// Removes the violations the allowlist tolerates exactly and reports its lines that are
/// malformed, stale or exceeded. Returns how many it tolerated.
fn apply_allowlist(text: Option<&str>, found: &mut Vec<Violation>) -> usize {
    let mut problems = Vec::new();
    let mut problem = |line: usize, message: String| {
        problems.push(Violation {
            path: ALLOWLIST.to_owned(),
            line,
            rule: Rule::Allowlist,
            message,
        })
    };
    let mut allowances: Vec<Allowance> = Vec::new();
    for (n, raw) in text.unwrap_or("").lines().enumerate() {
        let (fields, reason) = raw.split_once('#').unwrap_or((raw, ""));
        let fields: Vec<&str> = fields.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let rule = fields
            .first()
            .and_then(|name| Rule::ALL.into_iter().find(|r| r.name() == *name))
            .filter(|r| r.allowable());
        let count = fields
            .get(2)
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|&c| c > 0);
        match (fields.len(), rule, count) {
            (3, Some(rule), Some(count)) if !reason.trim().is_empty() => {
                let path = fields[1].to_owned();
                if allowances.iter().any(|a| a.rule == rule && a.path == path) {
                    problem(n + 1, format!("{} {path} is listed twice", rule.name()));
                } else {
                    allowances.push(Allowance {
                        line: n + 1,
                        rule,
                        path,
                        count,
                    });
                }
            }
            _ => problem(
                n + 1,
                "expected `rule-name path count  # reason` (a known rule other than cycles, a \
                 count of at least 1, a reason)"
                    .to_owned(),
            ),
        }
    }
    let mut tolerated = 0;
    let mut excused: HashSet<(Rule, &str)> = HashSet::new();
    for a in &allowances {
        let n = found
            .iter()
            .filter(|v| v.rule == a.rule && v.path == a.path)
            .count();
        let name = a.rule.name();
        if n == a.count {
            tolerated += n;
            excused.insert((a.rule, &a.path));
        } else if n > a.count {
            problem(
                a.line,
                format!(
                    "{name} {} allows {} but {n} are found: the new ones are listed",
                    a.path, a.count
                ),
            );
        } else {
            let fix = match n {
                0 => "remove this line".to_owned(),
                n => format!("lower it to {n}"),
            };
            problem(
                a.line,
                format!(
                    "{name} {} allows {} but {n} are left: {fix}",
                    a.path, a.count
                ),
            );
        }
    }
    found.retain(|v| !excused.contains(&(v.rule, v.path.as_str())));
    found.extend(problems);
    tolerated
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of `files`, with an ARCHITECTURE.md and allowlist.
    fn sources(files: &[(&str, &str)], architecture: &str, allowlist: &str) -> Sources {
        let files = files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        Sources::new(
            files,
            Some(architecture.to_owned()),
            Some(allowlist.to_owned()),
        )
    }

    /// `rule`'s findings over `files` as `path:line`, with a cycle bound of 1.
    #[track_caller]
    fn check_rule(rule: Rule, files: &[(&str, &str)], expected: &[&str]) {
        let report = check(&sources(files, "", ""), 1);
        let got: Vec<String> = report
            .violations
            .iter()
            .filter(|v| v.rule == rule)
            .map(|v| format!("{}:{}", v.path, v.line))
            .collect();
        assert_eq!(got, expected, "{report}");
    }

    /// `rule`'s findings as printed.
    fn shown(report: &Report, rule: Rule) -> Vec<String> {
        report
            .violations
            .iter()
            .filter(|v| v.rule == rule)
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn tidy() {
        let report = run(&crate::root()).unwrap();
        assert!(report.violations.is_empty(), "cargo xtask tidy:\n{report}");
    }

    #[test]
    fn store_imports() {
        check_rule(
            Rule::StoreImports,
            &[
                (
                    "server/src/store/users.rs",
                    "//! Users.\n\
                     use crate::{error::E, scope::ClinicScope, time, store::sql};\n\
                     use super::tx::Tx;\n\
                     // crate::http::x in a comment, and in a string:\n\
                     const S: &str = \"crate::audit::log\";\n\
                     use crate::{http::router, sign_in::mfa::Ticket};\n\
                     fn f() { crate::audit::log::append(); }\n\
                     use super::super::state::AppState;\n\
                     fn g(s: &crate::AppState) {}",
                ),
                ("server/src/lib.rs", "pub use state::AppState;"),
            ],
            &[
                "server/src/store/users.rs:6",
                "server/src/store/users.rs:6",
                "server/src/store/users.rs:7",
                "server/src/store/users.rs:8",
                "server/src/store/users.rs:9",
            ],
        );
    }

    #[test]
    fn domain_imports() {
        check_rule(
            Rule::DomainImports,
            &[
                (
                    "server/src/http/routes/x.rs",
                    "use crate::http::extract::Body; use axum::Json;",
                ),
                ("server/src/lib.rs", "pub use http::router::build_router;"),
                ("server/src/main.rs", "use clinicdesk_server::http::tls;"),
                ("server/src/state.rs", "use crate::time::Clock;"),
                (
                    "server/src/sign_in/mfa/mod.rs",
                    "//! Domain code: no axum.\n\
                     use crate::store::Store;\n\
                     fn f() { crate::http::routes::session::issue_session(); }\n\
                     fn g() -> axum::Json<()> { todo!() }\n\
                     use crate::build_router;",
                ),
                ("server/src/time.rs", "use super::http::x;"),
            ],
            &[
                "server/src/sign_in/mfa/mod.rs:3",
                "server/src/sign_in/mfa/mod.rs:4",
                "server/src/sign_in/mfa/mod.rs:5",
                "server/src/time.rs:1",
            ],
        );
    }

    #[test]
    fn sql_outside_store() {
        check_rule(
            Rule::SqlOutsideStore,
            &[
                ("server/src/store/mod.rs", "sqlx::query(\"SELECT 1\");"),
                ("server/tests/it/db.rs", "sqlx::query(\"SELECT 1\");"),
                (
                    "server/src/audit/log.rs",
                    "fn f() {\n\
                     sqlx::query_as::<_, (i64,)>(\"SELECT n FROM t\");\n\
                     let q = \"\n    INSERT INTO t VALUES ($1)\";\n\
                     let ok = [\"DELETE\", \"Select a clinic\", \"SELECTED \", \"WITHDRAWN\"];\n\
                     // sqlx::query(\"UPDATE t\") in a comment\n\
                     conn.execute(sqlx::AssertSqlSafe(text));\n\
                     }\n\
                     #[cfg(test)]\n\
                     mod tests {\n\
                     fn t() { sqlx::raw_sql(\"BEGIN; SET ROLE x\"); }\n\
                     fn u() { sqlx::query(\"SET ROLE app\"); }\n\
                     }",
                ),
            ],
            &[
                "server/src/audit/log.rs:2",
                "server/src/audit/log.rs:3",
                "server/src/audit/log.rs:7",
                "server/src/audit/log.rs:11",
                "server/src/audit/log.rs:12",
            ],
        );
        assert_eq!(sql_keyword(" \n\tWITH x AS"), Some("WITH"));
        assert_eq!(sql_keyword("COMMIT;"), Some("COMMIT"));
        assert_eq!(sql_keyword("select 1"), None);
    }

    #[test]
    fn clinic_scope() {
        check_rule(
            Rule::ClinicScope,
            &[
                (
                    "server/src/scope.rs",
                    "pub struct ClinicScope { clinic_id: Uuid }\n\
                     impl ClinicScope { fn f() -> Self { ClinicScope { clinic_id } } }",
                ),
                (
                    "server/src/http/authorize.rs",
                    "fn scope(&self) -> &ClinicScope { todo!() }\n\
                     let s = ClinicScope::of_principal(&p);",
                ),
                (
                    "server/src/http/routes/patients.rs",
                    "let id = scope.clinic_id(); let c = ClinicScope::clinic_id(&s);\n\
                     let s = crate::scope::ClinicScope::of_principal(&p);\n\
                     let s = ClinicScope { clinic_id: x };\n\
                     let s = ClinicScope::of_bare_id(x);\n\
                     let c = Console::operator();\n\
                     // ClinicScope::of_principal in a comment",
                ),
                (
                    "server/src/sign_in/mfa/store.rs",
                    "ClinicScope::of_mfa_ticket(&t)",
                ),
                (
                    "server/src/devices/registry.rs",
                    "&ClinicScope::of_enrollment(&r)",
                ),
                (
                    "server/src/store/tx.rs",
                    "pub fn scope(&self) -> &'a ClinicScope {\n    &self.scope\n}",
                ),
                (
                    "server/tests/it/main.rs",
                    "ClinicScope::of_principal(&p); Console::operator();",
                ),
                ("tests/it/main.rs", "let s = ClinicScope { clinic_id };"),
            ],
            &[
                "server/src/http/routes/patients.rs:2",
                "server/src/http/routes/patients.rs:3",
                "server/src/http/routes/patients.rs:4",
                "server/src/http/routes/patients.rs:5",
            ],
        );
    }

    #[test]
    fn wall_clock() {
        let now = "let t = std::time::SystemTime::now();";
        check_rule(
            Rule::WallClock,
            &[
                ("server/src/time.rs", now),
                ("src-tauri/src/clock.rs", now),
                ("src-tauri/src/os/clock.rs", now),
                ("bench/src/lock_latency.rs", now),
                ("tests/src/authenticator.rs", now),
                ("server/tests/it/main.rs", now),
                ("xtask/src/main.rs", now),
                (
                    "server/src/http/tls.rs",
                    "use std::time::SystemTime;\nlet t = SystemTime::now();",
                ),
                (
                    "src-tauri/src/session/mod.rs",
                    "// SystemTime::now\nlet x = \"SystemTime::now\";",
                ),
                ("ui/src/clock.rs", now),
            ],
            &["server/src/http/tls.rs:2", "ui/src/clock.rs:1"],
        );
    }

    #[test]
    fn store_pool() {
        check_rule(
            Rule::StorePool,
            &[
                (
                    "server/src/store/mod.rs",
                    "impl Store {\n\
                     pub fn pool(&self) -> &AnyPool { &self.pool }\n\
                     pub(crate) async fn raw(&self) -> &sqlx::AnyPool { &self.pool }\n\
                     pub(super) fn inner(&self) -> &AnyPool { &self.pool }\n\
                     fn private(&self) -> AnyPool { self.pool.clone() }\n\
                     pub fn owned<T: Into<u8>>(&self, t: T) -> Option<sqlx::Pool<sqlx::Any>> {}\n\
                     pub fn fine(&self, pool: &AnyPool) -> usize { 0 }\n\
                     }",
                ),
                (
                    "server/src/state.rs",
                    "pub fn pool(&self) -> &AnyPool { todo!() }",
                ),
            ],
            &[
                "server/src/store/mod.rs:2",
                "server/src/store/mod.rs:3",
                "server/src/store/mod.rs:6",
            ],
        );
    }

    #[test]
    fn module_docs() {
        check_rule(
            Rule::ModuleDocs,
            &[
                ("server/src/a.rs", "//! A.\nfn f() {}"),
                (
                    "server/src/b.rs",
                    "\n#![allow(x)]\n#![cfg_attr(\n    test,\n    allow(y)\n)]\n\n//! B.\n",
                ),
                ("xtask/src/c.rs", "// Not a doc comment.\n//! C."),
                ("ui/src/d.rs", "use x;\n//! D."),
                ("protocol/src/e.rs", ""),
                ("src-tauri/src/f.rs", "/// Item doc.\nfn f() {}"),
                ("server/tests/it/main.rs", "fn t() {}"),
                ("src-tauri/build.rs", "fn main() {}"),
            ],
            &[
                "protocol/src/e.rs:1",
                "src-tauri/src/f.rs:1",
                "ui/src/d.rs:1",
                "xtask/src/c.rs:1",
            ],
        );
    }

    #[test]
    fn app_layering() {
        check_rule(
            Rule::AppLayering,
            &[
                (
                    "src-tauri/src/commands.rs",
                    "#[tauri::command]\nfn f(app: tauri::AppHandle) {}",
                ),
                (
                    "src-tauri/src/main.rs",
                    "fn main() { tauri::Builder::default(); }",
                ),
                (
                    "src-tauri/src/session/mod.rs",
                    "//! Core, no tauri:: here.\n\
                     use tauri::Emitter;\n\
                     fn f(x: crate::tauri::Y, s: &str) { let _ = \"tauri::\"; }\n\
                     use tauri_plugin_dialog::DialogExt;",
                ),
                ("server/src/x.rs", "use tauri::Emitter;"),
            ],
            &[
                "src-tauri/src/session/mod.rs:2",
                "src-tauri/src/session/mod.rs:4",
            ],
        );
    }

    #[test]
    fn app_folders_import_downwards() {
        check_rule(
            Rule::AppLayering,
            &[
                (
                    "src-tauri/src/core/session/mod.rs",
                    "use crate::local::cache;\nuse crate::{error::AppError, os::clock};",
                ),
                (
                    "src-tauri/src/local/cache.rs",
                    "//! Not `crate::core` in a comment.\n\
                     use crate::secrets::keys;\n\
                     use crate::net::client;\n\
                     fn f() -> crate::core::Core { todo!() }",
                ),
                ("src-tauri/src/os/clock.rs", "use crate::error::AppError;"),
                ("src-tauri/src/net/client.rs", "use crate::os::clock;"),
                (
                    "src-tauri/src/os/idle.rs",
                    "use crate::{error::AppError, core::{Core, x}};",
                ),
                ("src-tauri/src/commands.rs", "use crate::core::Core;"),
                ("src-tauri/src/config.rs", "use crate::core::Core;"),
                ("src-tauri/src/error.rs", "use crate::local::db::DbError;"),
            ],
            &[
                "src-tauri/src/config.rs:1",
                "src-tauri/src/local/cache.rs:3",
                "src-tauri/src/local/cache.rs:4",
                "src-tauri/src/net/client.rs:1",
                "src-tauri/src/os/idle.rs:1",
            ],
        );
    }

    #[test]
    fn invariant_tests() {
        let architecture = "# Architecture\n\
            \n\
            **Architecture Invariant:** a thing holds. Tests: `a_test_that_exists`,\n\
            `a_test_that_is_gone` (both legs), and `fn_in_a_comment`; every `GET` is marked \
            `trail`.\n\
            \n\
            **Architecture Invariant:** nothing names a test here, though `it_mentions_one`.\n\
            \n\
            **Architecture Invariant:** layering. Checked by\n`cargo xtask tidy`.\n\
            \n\
            Not an invariant. Tests: `nothing_checks_this`.\n";
        let files = [(
            "server/src/x.rs",
            "#[test]\nfn a_test_that_exists() {}\n// fn fn_in_a_comment() {}",
        )];
        let report = check(&sources(&files, architecture, ""), 1);
        assert_eq!(
            shown(&report, Rule::InvariantTests),
            [
                "ARCHITECTURE.md:4: [invariant-tests] `a_test_that_is_gone` is named as a test but \
                 no `fn a_test_that_is_gone` exists",
                "ARCHITECTURE.md:4: [invariant-tests] `fn_in_a_comment` is named as a test but no \
                 `fn fn_in_a_comment` exists",
                "ARCHITECTURE.md:6: [invariant-tests] an Architecture Invariant names no test \
                 (\"Tests: `name`\", or \"Checked by `cargo xtask tidy`\")",
            ]
        );
    }

    #[test]
    fn evidence_tests() {
        let files = [
            (
                "server/tests/it/a.rs",
                "#[test]\nfn a_test_that_exists() {}",
            ),
            (
                "tests/it/b.rs",
                "#[test]\nfn elsewhere_only() {}\n// fn in_a_comment() {}",
            ),
        ];
        let mut sources = sources(&files, "", "");
        sources.safeguards = Some(
            "[[safeguard]]\nsection = \"164.312(b)\"\ntitle = \"Audit\"\nfeatures = []\n\
             tests = [\n\
             \"clinicdesk-server it a::a_test_that_exists\",\n\
             \"clinicdesk-server it b::elsewhere_only\",\n\
             \"clinicdesk-tests it b::in_a_comment\",\n\
             \"someone-else it c::x_y\",\n\
             ]\n"
            .to_owned(),
        );
        let report = check(&sources, 1);
        assert_eq!(
            shown(&report, Rule::EvidenceTests),
            [
                "tests/safeguards.toml:7: [evidence-tests] `b::elsewhere_only` is named as a test \
                 but no `fn elsewhere_only` exists in server/",
                "tests/safeguards.toml:8: [evidence-tests] `b::in_a_comment` is named as a test \
                 but no `fn in_a_comment` exists in tests/",
                "tests/safeguards.toml:9: [evidence-tests] `someone-else` is not a package of this \
                 workspace",
            ]
        );
    }

    #[test]
    fn cycles() {
        let files = [
            ("server/src/lib.rs", "pub mod a; pub mod b;"),
            ("server/src/a/mod.rs", "use crate::b::x;"),
            ("server/src/a/inner.rs", "use super::super::c::Y;"),
            (
                "server/src/b.rs",
                "fn f() { crate::a::inner::g(); }\nmod tests { use super::*; }",
            ),
            ("server/src/c.rs", "use crate::a::Z;"),
            ("server/src/d.rs", "use crate::d::e::F; use crate::a::G;"),
        ];
        let report = check(&sources(&files, "", ""), 4);
        assert_eq!(report.largest_cycle, ["a", "a::inner", "b", "c"]);
        assert!(!report.violations.iter().any(|v| v.rule == Rule::Cycles));
        let report = check(&sources(&files, "", ""), 3);
        assert_eq!(
            shown(&report, Rule::Cycles),
            [
                "server/src: [cycles] a cycle of 4 modules, over MAX_SERVER_CYCLE = 3 \
              (xtask/src/tidy.rs): a, a::inner, b, c"
            ]
        );
    }

    #[test]
    fn the_allowlist_tolerates_exactly_its_count() {
        let files = [(
            "server/src/audit/log.rs",
            "//! Log.\nsqlx::query(\"x\");\nsqlx::query(\"y\");",
        )];
        let run = |allowlist: &str| -> (Vec<String>, usize) {
            let report = check(&sources(&files, "", allowlist), 1);
            let got = report
                .violations
                .iter()
                .filter(|v| v.rule != Rule::InvariantTests)
                .map(|v| format!("{}:{}: {}", v.path, v.line, v.rule.name()))
                .collect();
            (got, report.tolerated)
        };
        let allow = |n: &str| {
            format!(
                "# comment\n\nsql-outside-store server/src/audit/log.rs {n}  # step 2 moves it\n"
            )
        };
        assert_eq!(run(&allow("2")), (vec![], 2));
        assert_eq!(
            run(&allow("1")),
            (
                vec![
                    "server/src/audit/log.rs:2: sql-outside-store".to_owned(),
                    "server/src/audit/log.rs:3: sql-outside-store".to_owned(),
                    "xtask/tidy-allow.txt:3: allowlist".to_owned(),
                ],
                0
            )
        );
        assert_eq!(
            run(&allow("3")),
            (
                vec![
                    "server/src/audit/log.rs:2: sql-outside-store".to_owned(),
                    "server/src/audit/log.rs:3: sql-outside-store".to_owned(),
                    "xtask/tidy-allow.txt:3: allowlist".to_owned(),
                ],
                0
            )
        );
        let malformed = "sql-outside-store server/src/audit/log.rs 2\n\
                         cycles server/src 3  # no\n\
                         no-such-rule x 1  # typo\n\
                         module-docs x 0  # zero\n";
        let (got, _) = run(malformed);
        assert_eq!(
            got.iter().filter(|g| g.ends_with("allowlist")).count(),
            4,
            "{got:?}"
        );
    }

    #[test]
    fn the_draft_lists_counts_per_file() {
        let files = [(
            "server/src/audit/log.rs",
            "//! Log.\nsqlx::query(\"x\");\nsqlx::query(\"y\");",
        )];
        let report = check(
            &sources(
                &files,
                "**Architecture Invariant:** x. Tests: `gone_test`.",
                "",
            ),
            1,
        );
        assert_eq!(
            report.allowlist_draft(),
            "invariant-tests ARCHITECTURE.md 1  # TODO: why, and which step pays it\n\
             sql-outside-store server/src/audit/log.rs 2  # TODO: why, and which step pays it\n"
        );
    }
}
