//! Loading and compiling rules: files in name order → raw serde types → one checked
//! [`RuleSet`]. Every problem is collected with its file, line and column; nothing here
//! panics on input, and hostile YAML (aliases, deep nesting, huge files) is refused by
//! serde_yaml's limits and the size cap before any tree is built. A directory entry is
//! read only when it is a regular file whose real path lies inside the directory, so
//! loading never blocks on a FIFO and never echoes another file's content.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::diagnostic::{Diagnostic, Diagnostics, Severity};
use super::positions::Positions;
use super::raw::{RawChange, RawDemand, RawFeature, RawFile, RawResponse};
use super::{
    Chain, Change, Demand, Feature, FeatureId, FeatureSet, Group, Level, LevelId, Mode, Origin,
    Response, RuleSet, Status, MAX_FEATURES,
};
use crate::location::{CountryCode, Jurisdiction};

/// Largest rules file accepted.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most files accepted in one rules directory.
pub const MAX_FILES: usize = 4096;

/// A rules file's name (as reported in diagnostics) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Reads every `*.yaml`/`*.yml` entry of `dir` (not hidden ones) in name order and
/// compiles them. Red lines are checked at `now`.
///
/// Symlinks are followed (a Kubernetes ConfigMap volume holds `name -> ..data/name`),
/// but an entry whose real path lies outside `dir` is refused unread, so no other file
/// (a token file, say) can reach a diagnostic, the reload record or an API answer. An
/// entry that is not a regular file (a directory, a FIFO, a device), cannot be resolved
/// or read, or is larger than [`MAX_FILE_BYTES`] is an error: never a hang, never a file
/// silently left out.
pub fn load_dir(dir: &Path, now: Timestamp) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    let shown = dir.display().to_string();
    let (root, names) =
        match std::fs::canonicalize(dir).and_then(|root| Ok((root, rules_entries(dir)?))) {
            Ok(listed) => listed,
            Err(e) => {
                diags.push(whole_file(
                    &shown,
                    format!("cannot read rules directory: {e}"),
                ));
                return Err(diags);
            }
        };
    if names.len() > MAX_FILES {
        diags.push(whole_file(
            &shown,
            format!("{} rules files, over the limit of {MAX_FILES}", names.len()),
        ));
        return Err(diags);
    }
    let mut files = Vec::with_capacity(names.len());
    for n in names {
        let path = dir.join(&n);
        let name = path.display().to_string();
        let read = match n.to_str() {
            Some(_) => read_entry(&root, &path),
            None => Err(FileRefusal::NameNotUtf8),
        };
        match read {
            Ok(text) => files.push(SourceFile { name, text }),
            Err(refusal) => diags.push(whole_file(&name, refusal.to_string())),
        }
    }
    match compile(&files, now) {
        Ok((rules, warnings)) if !diags.has_errors() => Ok((rules, warnings)),
        Ok((_, more)) | Err(more) => {
            diags.0.extend(more.0);
            diags.sort();
            Err(diags)
        }
    }
}

/// The names in `dir` that are rules files by name (`*.yaml`, `*.yml`, not hidden), in
/// name order. Hidden entries are left out: a ConfigMap volume's `..data` and
/// `..2026_…` directories hold the files the visible names point at.
fn rules_entries(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let b = name.as_encoded_bytes();
        if !b.starts_with(b".") && (b.ends_with(b".yaml") || b.ends_with(b".yml")) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Why an entry of a rules directory is not read. Each is an error at the entry.
#[derive(Debug, thiserror::Error)]
enum FileRefusal {
    #[error("file name is not valid UTF-8")]
    NameNotUtf8,
    #[error("cannot resolve path: {0}")]
    Resolve(#[source] std::io::Error),
    #[error("path resolves outside the rules directory: refused unread (a symlink must point inside the directory)")]
    Outside,
    #[error("path is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("file is {0} bytes, over the limit of {MAX_FILE_BYTES} bytes")]
    TooBig(u64),
    #[error("cannot read file: {0}")]
    Read(#[source] std::io::Error),
    #[error("file was replaced while it was read")]
    Replaced,
    #[error("file is not valid UTF-8")]
    NotUtf8,
}

/// Reads one entry of the rules directory `root` (canonical), refusing what
/// [`load_dir`] refuses. The type and size are checked from metadata before the file is
/// opened (without waiting: a FIFO opened for reading would block until a writer came),
/// and again on the opened file, which must be the one checked; the read stops one byte
/// past the limit whatever the metadata said.
fn read_entry(root: &Path, path: &Path) -> Result<String, FileRefusal> {
    use std::io::Read;
    let real = std::fs::canonicalize(path).map_err(FileRefusal::Resolve)?;
    if !real.starts_with(root) {
        return Err(FileRefusal::Outside);
    }
    let checked = std::fs::metadata(&real).map_err(FileRefusal::Read)?;
    regular_within_limit(&checked)?;
    let file = open_without_waiting(&real).map_err(FileRefusal::Read)?;
    let opened = file.metadata().map_err(FileRefusal::Read)?;
    if !same_file(&checked, &opened) {
        return Err(FileRefusal::Replaced);
    }
    regular_within_limit(&opened)?;
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(FileRefusal::Read)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileRefusal::TooBig(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|_| FileRefusal::NotUtf8)
}

fn regular_within_limit(m: &std::fs::Metadata) -> Result<(), FileRefusal> {
    if !m.is_file() {
        return Err(FileRefusal::NotRegular(file_kind(&m.file_type())));
    }
    if m.len() > MAX_FILE_BYTES as u64 {
        return Err(FileRefusal::TooBig(m.len()));
    }
    Ok(())
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "an entry of an unknown kind"
    }
}

#[cfg(unix)]
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // `O_NOFOLLOW`: the path is canonical, so a symlink here was put in after the check.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(not(unix))]
fn open_without_waiting(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

fn whole_file(file: &str, message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_string(),
        line: 0,
        column: 0,
        severity: Severity::Error,
        message,
    }
}

fn too_big(file: &str, len: usize) -> Diagnostic {
    whole_file(file, FileRefusal::TooBig(len as u64).to_string())
}

/// `sha256:` over each file's base name and contents, in name order.
fn version_of(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| base_name(&a.name).cmp(base_name(&b.name)));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(base_name(&f.name).as_bytes());
        h.update([0]);
        h.update((f.text.len() as u64).to_be_bytes());
        h.update(f.text.as_bytes());
    }
    format!("sha256:{:x}", h.finalize())
}

fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

struct Parsed {
    name: Arc<str>,
    raw: RawFile,
    pos: Positions,
}

struct Ctx {
    diags: Diagnostics,
    /// Demand and change ids seen so far, across files, with where.
    demand_ids: HashMap<String, Origin>,
    change_ids: HashMap<String, Origin>,
}

/// What the global file declares, which every level's rules are checked against.
struct Declared<'a> {
    feature_names: &'a [&'a str],
    kinds: &'a [&'a str],
    responses: &'a [(Arc<str>, Response)],
    /// The global file's `transparency.public` (default `true`).
    public: bool,
}

impl Declared<'_> {
    fn feature_id(&self, name: &str) -> Option<FeatureId> {
        self.feature_names
            .iter()
            .position(|n| *n == name)
            .map(|i| i as FeatureId)
    }
}

impl Ctx {
    fn at(&mut self, f: &Parsed, path: &str, key: bool, sev: Severity, message: String) {
        let (line, column) = if key {
            f.pos.key(path)
        } else {
            f.pos.value(path)
        };
        self.diags.push(Diagnostic {
            file: f.name.to_string(),
            line,
            column,
            severity: sev,
            message,
        });
    }
    fn error(&mut self, f: &Parsed, path: &str, message: String) {
        self.at(f, path, false, Severity::Error, message)
    }
    fn error_key(&mut self, f: &Parsed, path: &str, message: String) {
        self.at(f, path, true, Severity::Error, message)
    }
    fn warn(&mut self, f: &Parsed, path: &str, message: String) {
        self.at(f, path, false, Severity::Warning, message)
    }
}

fn origin(f: &Parsed, path: &str) -> Origin {
    let (line, column) = f.pos.value(path);
    Origin {
        file: f.name.clone(),
        line,
        column,
    }
}

/// ` (did you mean `x`?)` when a candidate is close to `name`.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&name.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

fn parse_file(f: &SourceFile, diags: &mut Diagnostics) -> Option<Parsed> {
    if f.text.len() > MAX_FILE_BYTES {
        diags.push(too_big(&f.name, f.text.len()));
        return None;
    }
    if f.text.trim().is_empty() {
        diags.push(whole_file(&f.name, "rules file is empty".into()));
        return None;
    }
    let pos = match Positions::scan(&f.text) {
        Ok(pos) => pos,
        Err(refused) => {
            diags.push(Diagnostic {
                file: f.name.clone(),
                line: refused.line,
                column: refused.column,
                severity: Severity::Error,
                message: refused.message,
            });
            return None;
        }
    };
    match serde_yaml::from_str::<RawFile>(&f.text) {
        Ok(raw) => Some(Parsed {
            name: f.name.as_str().into(),
            raw,
            pos,
        }),
        Err(e) => {
            let mut at = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((0, 0));
            // serde_yaml points a duplicate at the mapping; point at the second key.
            let msg = e.to_string();
            if let Some((path, rest)) = msg.split_once(": duplicate key `") {
                if let Some(key) = rest.split('`').next() {
                    at = pos.key(&format!("{path}.{key}"));
                }
            }
            let (line, column) = at;
            diags.push(Diagnostic {
                file: f.name.clone(),
                line,
                column,
                severity: Severity::Error,
                message: yaml_message(&e),
            });
            None
        }
    }
}

/// serde_yaml's message without its trailing ` at line L column C`, which the
/// diagnostic already carries.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    let s = match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let s = s.replace(
        "recursion limit exceeded",
        "nesting too deep (recursion limit exceeded)",
    );
    s.replace(
        "repetition limit exceeded",
        "too many alias expansions (a YAML bomb?): repetition limit exceeded",
    )
}

fn is_feature_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn status_serves(s: Status) -> bool {
    s != Status::Withdrawn
}

/// Compiles files (already read) into a rule set. Red lines are checked at `now`.
pub fn compile(
    files: &[SourceFile],
    now: Timestamp,
) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let mut cx = Ctx {
        diags: Diagnostics::default(),
        demand_ids: HashMap::new(),
        change_ids: HashMap::new(),
    };
    let version = version_of(files);
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| base_name(&a.name).cmp(base_name(&b.name)));
    let parsed: Vec<Parsed> = sorted
        .into_iter()
        .filter_map(|f| parse_file(f, &mut cx.diags))
        .collect();
    let shape_errors = cx.diags.has_errors();

    // The global file.
    let globals: Vec<&Parsed> = parsed
        .iter()
        .filter(|p| p.raw.jurisdiction.as_deref().is_none_or(|j| j == "*"))
        .collect();
    let global = match globals.as_slice() {
        [g] => Some(*g),
        [] => {
            if !shape_errors {
                cx.diags.push(whole_file(
                    "(rules)",
                    "no global file: one file must declare `features` and `responses` without a `jurisdiction` (or with `jurisdiction: \"*\"`)".into(),
                ));
            }
            None
        }
        [first, rest @ ..] => {
            for r in rest {
                let (l, c) = first.pos.value("");
                cx.error(
                    r,
                    "",
                    format!(
                        "a second global file (no `jurisdiction`); the global rules are already defined in {}:{l}:{c}",
                        first.name
                    ),
                );
            }
            Some(*first)
        }
    };

    // Features.
    let mut features: Vec<Feature> = Vec::new();
    if let Some(g) = global {
        for (name, entry) in &g.raw.features.0 {
            let path = format!("features.{name}");
            if !is_feature_name(name) {
                cx.error_key(
                    g,
                    &path,
                    format!("feature name `{name}` must be lower case letters, digits, `_` or `-`, starting with a letter"),
                );
                continue;
            }
            let (default, paths, description) = match entry {
                RawFeature::Switch(b) => (*b, Vec::new(), None),
                RawFeature::Declaration(d) => (d.default.0, d.paths.clone(), d.description.clone()),
            };
            let mut prefixes = Vec::with_capacity(paths.len());
            for (i, p) in paths.iter().enumerate() {
                match crate::path::PathPrefix::parse(p) {
                    Ok(prefix) => prefixes.push(prefix),
                    Err(_) if !p.starts_with('/') => cx.error(
                        g,
                        &format!("{path}.paths[{i}]"),
                        format!("path prefix `{p}` must start with `/`"),
                    ),
                    Err(why) => cx.error(
                        g,
                        &format!("{path}.paths[{i}]"),
                        format!("path prefix `{}` cannot be matched for certain ({why}); write it in printable ASCII without `?`, `#` or encoded separators", p.escape_debug()),
                    ),
                }
            }
            features.push(Feature {
                name: name.as_str().into(),
                default,
                paths,
                prefixes,
                description,
                origin: origin(g, &path),
            });
        }
        if features.len() > MAX_FEATURES {
            cx.error(
                g,
                "features",
                format!(
                    "{} features declared, over the limit of {MAX_FEATURES}",
                    features.len()
                ),
            );
            features.truncate(MAX_FEATURES);
        }
    }
    let feature_names_owned: Vec<Arc<str>> = features.iter().map(|f| f.name.clone()).collect();
    let feature_names: Vec<&str> = feature_names_owned.iter().map(|n| &**n).collect();
    let feature_id = |name: &str| {
        feature_names
            .iter()
            .position(|n| *n == name)
            .map(|i| i as FeatureId)
    };
    let mut defaults = FeatureSet::EMPTY;
    for (i, f) in features.iter().enumerate() {
        if f.default {
            defaults.insert(i as FeatureId);
        }
    }

    // Responses.
    let mut responses: Vec<(Arc<str>, Response)> = Vec::new();
    if let Some(g) = global {
        for (kind, r) in &g.raw.responses.0 {
            let path = format!("responses.{kind}");
            let response = match r {
                RawResponse::Withdraw => Response::Withdraw,
                RawResponse::Comply => Response::Comply,
                RawResponse::Disable(list) => {
                    let mut set = FeatureSet::EMPTY;
                    for (i, name) in list.iter().enumerate() {
                        match feature_id(name) {
                            Some(id) => set.insert(id),
                            None => cx.error(
                                g,
                                &format!("{path}.disable[{i}]"),
                                format!(
                                    "unknown feature `{name}`{}",
                                    suggest(name, feature_names.iter().copied())
                                ),
                            ),
                        }
                    }
                    Response::Disable(set)
                }
            };
            responses.push((kind.as_str().into(), response));
        }
    }
    let kinds_owned: Vec<Arc<str>> = responses.iter().map(|(k, _)| k.clone()).collect();
    let kinds: Vec<&str> = kinds_owned.iter().map(|k| &**k).collect();

    // Groups.
    let mut groups: Vec<Group> = Vec::new();
    if let Some(g) = global {
        for (name, members) in &g.raw.groups.0 {
            let path = format!("groups.{name}");
            match Jurisdiction::parse(name) {
                Some(Jurisdiction::Group(_)) => {}
                Some(j) => {
                    cx.error_key(g, &path, format!("group name `{name}` is already the jurisdiction `{j}`; choose another name"));
                    continue;
                }
                None => {
                    cx.error_key(g, &path, format!("group name `{name}` must be letters, digits, `_` or `-`, starting with a letter"));
                    continue;
                }
            }
            let mut codes: Vec<CountryCode> = Vec::new();
            for (i, m) in members.iter().enumerate() {
                let mpath = format!("{path}[{i}]");
                match CountryCode::parse(m).filter(|c| crate::iso::is_country(*c)) {
                    Some(c) if codes.contains(&c) => {
                        cx.warn(g, &mpath, format!("`{m}` is listed twice in group `{name}`"))
                    }
                    Some(c) => codes.push(c),
                    None => cx.error(
                        g,
                        &mpath,
                        format!(
                            "unknown country `{m}` in group `{name}`: not an ISO 3166-1 alpha-2 code{}",
                            suggest(m, crate::iso::country_codes())
                        ),
                    ),
                }
            }
            groups.push(Group {
                name: name.as_str().into(),
                members: codes,
                origin: origin(g, &path),
            });
        }
    }
    let group_names: Vec<Arc<str>> = groups.iter().map(|g| g.name.clone()).collect();

    // Levels.
    let mut levels: Vec<Level> = Vec::new();
    let mut by_jurisdiction: HashMap<Jurisdiction, LevelId> = HashMap::new();
    let mut defined_at: HashMap<Jurisdiction, Origin> = HashMap::new();
    let declared = Declared {
        feature_names: &feature_names,
        kinds: &kinds,
        responses: &responses,
        public: global
            .and_then(|g| g.raw.transparency.as_ref())
            .and_then(|t| t.public)
            .unwrap_or(true),
    };

    let global_file: Arc<str> = global
        .map(|g| g.name.clone())
        .unwrap_or_else(|| "(rules)".into());
    let mut global_level = empty_level(Jurisdiction::Global, global_file.clone());
    let mut unknown_level = empty_level(Jurisdiction::Unknown, global_file.clone());
    if let Some(g) = global {
        fill_level(&mut cx, g, &mut global_level, &declared);
        if let Some(u) = &g.raw.unknown {
            unknown_level.status = u.status.map(|s| (s, origin(g, "unknown.status")));
            for (name, on) in &u.features.0 {
                let path = format!("unknown.features.{name}");
                match feature_id(name) {
                    Some(id) => {
                        unknown_level
                            .features_origin
                            .get_or_insert_with(|| origin(g, &path));
                        if on.0 {
                            unknown_level.features_on.insert(id)
                        } else {
                            unknown_level.features_off.insert(id)
                        }
                    }
                    None => cx.error_key(
                        g,
                        &path,
                        format!(
                            "unknown feature `{name}`{}",
                            suggest(name, feature_names.iter().copied())
                        ),
                    ),
                }
            }
        }
    }
    levels.push(global_level);
    levels.push(unknown_level);
    let global_id: LevelId = 0;
    let unknown_id: LevelId = 1;
    by_jurisdiction.insert(Jurisdiction::Global, global_id);
    by_jurisdiction.insert(Jurisdiction::Unknown, unknown_id);

    for p in &parsed {
        let Some(code) = p.raw.jurisdiction.as_deref() else {
            continue;
        };
        if code == "*" {
            continue;
        }
        for (field, present) in [
            ("responses", !p.raw.responses.0.is_empty()),
            ("groups", !p.raw.groups.0.is_empty()),
            ("unknown", p.raw.unknown.is_some()),
            ("transparency", p.raw.transparency.is_some()),
        ] {
            if present {
                cx.error_key(
                    p,
                    field,
                    format!("`{field}` belongs in the global file, not in the rules of `{code}`"),
                );
            }
        }
        let j = match Jurisdiction::parse(code) {
            Some(Jurisdiction::Group(g)) if !group_names.contains(&g) => {
                let candidates: Vec<&str> = group_names
                    .iter()
                    .map(|g| &**g)
                    .chain(crate::iso::all_codes().map(|c| -> &str { c }))
                    .collect();
                cx.error(
                    p,
                    "jurisdiction",
                    format!(
                        "unknown jurisdiction `{code}`: not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group{}",
                        suggest(code, candidates)
                    ),
                );
                continue;
            }
            Some(Jurisdiction::Unknown) => {
                cx.error(
                    p,
                    "jurisdiction",
                    "the policy for `unknown` is set in the global file's `unknown` key".into(),
                );
                continue;
            }
            Some(j) => j,
            None => {
                cx.error(
                    p,
                    "jurisdiction",
                    format!(
                        "`{code}` is not a jurisdiction code (`*`, `FR`, `US-CA` or a group name)"
                    ),
                );
                continue;
            }
        };
        let here = origin(p, "jurisdiction");
        let duplicate = defined_at.get(&j).cloned();
        match &duplicate {
            Some(prev) => cx.error(
                p,
                "jurisdiction",
                format!("jurisdiction `{j}` is defined twice; first defined at {prev}"),
            ),
            None => {
                defined_at.insert(j.clone(), here);
            }
        }
        // A duplicate is still checked, so that all of its problems show at once.
        let mut level = empty_level(j.clone(), p.name.clone());
        level.name = p.raw.name.clone();
        fill_level(&mut cx, p, &mut level, &declared);
        if duplicate.is_none() {
            by_jurisdiction.insert(j, levels.len() as LevelId);
            levels.push(level);
        }
    }

    check_red_lines(&mut cx, &parsed, &levels, &groups, now);

    // Chains.
    let mut country_chains: Vec<Option<Chain>> = vec![None; 26 * 26];
    // Every two-letter code gets a chain, assigned or not (GeoIP files carry codes such
    // as `XK` that ISO has not assigned); only assigned codes can be group members.
    let all_codes = (b'A'..=b'Z').flat_map(|a| (b'A'..=b'Z').map(move |b| [a, b]));
    for c in all_codes.filter_map(|ab| CountryCode::parse(std::str::from_utf8(&ab).ok()?)) {
        let mut jurisdictions = vec![Jurisdiction::Country(c)];
        let member_of: Vec<&Group> = groups.iter().filter(|g| g.members.contains(&c)).collect();
        jurisdictions.extend(
            member_of
                .iter()
                .map(|g| Jurisdiction::Group(g.name.clone())),
        );
        jurisdictions.push(Jurisdiction::Global);
        let levels_general_first: Vec<LevelId> = jurisdictions
            .iter()
            .rev()
            .filter_map(|j| by_jurisdiction.get(j).copied())
            .collect();
        let has_keyed_changes = levels_general_first
            .iter()
            .any(|l| levels[*l as usize].is_keyed());
        country_chains[c.index()] = Some(Chain {
            jurisdictions,
            levels: levels_general_first,
            has_keyed_changes,
        });
    }
    let unknown_chain = Chain {
        jurisdictions: vec![Jurisdiction::Unknown, Jurisdiction::Global],
        levels: vec![global_id, unknown_id],
        has_keyed_changes: levels[0].is_keyed() || levels[1].is_keyed(),
    };
    let mut subdivisions: Vec<_> = by_jurisdiction
        .iter()
        .filter_map(|(j, id)| match j {
            Jurisdiction::Subdivision(c, s) => Some(((*c, *s), *id)),
            _ => None,
        })
        .collect();
    subdivisions.sort();

    let mut boundaries: Vec<Timestamp> = levels
        .iter()
        .flat_map(|l| {
            l.changes.iter().map(|c| c.at).chain(
                l.demands
                    .iter()
                    .filter(|d| d.state == super::DemandState::Enacted)
                    .map(|d| d.effective),
            )
        })
        .collect();
    boundaries.sort();
    boundaries.dedup();

    cx.diags.sort();
    if cx.diags.has_errors() {
        return Err(cx.diags);
    }
    let mut all = FeatureSet::EMPTY;
    for i in 0..features.len() {
        all.insert(i as FeatureId);
    }
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let rules = RuleSet {
        id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        version,
        features,
        defaults,
        all,
        responses,
        groups,
        levels,
        global: global_id,
        unknown: unknown_id,
        country_chains,
        unknown_chain,
        subdivisions,
        by_jurisdiction,
        boundaries,
        files: parsed.iter().map(|p| p.name.clone()).collect(),
    };
    Ok((rules, cx.diags))
}

fn empty_level(jurisdiction: Jurisdiction, file: Arc<str>) -> Level {
    Level {
        jurisdiction,
        name: None,
        file,
        status: None,
        features_on: FeatureSet::EMPTY,
        features_off: FeatureSet::EMPTY,
        features_origin: None,
        demands: Vec::new(),
        changes: Vec::new(),
    }
}

fn fill_level(cx: &mut Ctx, p: &Parsed, level: &mut Level, declared: &Declared<'_>) {
    level.status = p.raw.status.map(|s| (s, origin(p, "status")));
    if level.jurisdiction != Jurisdiction::Global {
        for (name, entry) in &p.raw.features.0 {
            let path = format!("features.{name}");
            match (entry, declared.feature_id(name)) {
                (RawFeature::Declaration(_), _) => cx.error(
                    p,
                    &path,
                    format!("features are declared in the global file; here write `{name}: on` or `{name}: off`"),
                ),
                (RawFeature::Switch(_), None) => cx.error_key(
                    p,
                    &path,
                    format!("unknown feature `{name}`{}", suggest(name, declared.feature_names.iter().copied())),
                ),
                (RawFeature::Switch(on), Some(id)) => {
                    level.features_origin.get_or_insert_with(|| origin(p, &path));
                    if *on {
                        level.features_on.insert(id)
                    } else {
                        level.features_off.insert(id)
                    }
                }
            }
        }
    }
    for (i, d) in p.raw.demands.iter().enumerate() {
        if let Some(demand) = compile_demand(cx, p, i, d, declared) {
            level.demands.push(demand);
        }
    }
    for (i, c) in p.raw.changes.iter().enumerate() {
        if let Some(change) = compile_change(cx, p, i, c, declared) {
            level.changes.push(change);
        }
    }
    level.changes.sort_by_key(|c| c.at);
}

/// Checks that a demand or change id is set and unique across the rule set.
fn check_id(cx: &mut Ctx, p: &Parsed, path: &str, id: &str, what: &str) -> bool {
    if id.trim().is_empty() {
        cx.error(p, path, format!("{what} id must not be empty"));
        return false;
    }
    let seen = if what == "demand" {
        &cx.demand_ids
    } else {
        &cx.change_ids
    };
    if let Some(prev) = seen.get(id) {
        let msg = format!("duplicate {what} id `{id}`; first used at {prev}");
        cx.error(p, path, msg);
        return false;
    }
    let here = origin(p, path);
    if what == "demand" {
        cx.demand_ids.insert(id.to_string(), here);
    } else {
        cx.change_ids.insert(id.to_string(), here);
    }
    true
}

/// A reference is an error unless it is an http(s) URL that can stand in a `Link`
/// header as it is (see [`super::raw::check_reference`]).
fn check_reference(cx: &mut Ctx, p: &Parsed, path: &str, r: &Option<String>) {
    if let Some(Err(e)) = r.as_deref().map(super::raw::check_reference) {
        cx.error(p, path, e.to_string());
    }
}

fn compile_demand(
    cx: &mut Ctx,
    p: &Parsed,
    i: usize,
    d: &RawDemand,
    declared: &Declared<'_>,
) -> Option<Demand> {
    let (kinds, responses) = (declared.kinds, declared.responses);
    let path = format!("demands[{i}]");
    let id_ok = check_id(cx, p, &format!("{path}.id"), &d.id, "demand");
    check_reference(cx, p, &format!("{path}.reference"), &d.reference);
    let effective = match super::raw::parse_rfc3339(&d.effective) {
        Ok(t) => Some(t),
        Err(e) => {
            cx.error(p, &format!("{path}.effective"), e);
            None
        }
    };
    let Some((kind, response)) = responses.iter().find(|(k, _)| **k == *d.kind) else {
        cx.error(
            p,
            &format!("{path}.kind"),
            format!(
                "unknown demand kind `{}`: add it to `responses` in the global file{}",
                d.kind,
                suggest(&d.kind, kinds.iter().copied())
            ),
        );
        return None;
    };
    let effective = effective?;
    id_ok.then(|| Demand {
        id: d.id.as_str().into(),
        kind: kind.clone(),
        state: d.state,
        effective,
        reference: d.reference.as_deref().map(Into::into),
        law: d.law.as_deref().map(Into::into),
        description: d.description.as_deref().map(Into::into),
        response: response.clone(),
        public: d.public.unwrap_or(declared.public),
        origin: origin(p, &format!("{path}.id")),
    })
}

fn compile_change(
    cx: &mut Ctx,
    p: &Parsed,
    i: usize,
    c: &RawChange,
    declared: &Declared<'_>,
) -> Option<Change> {
    let feature_names = declared.feature_names;
    let path = format!("changes[{i}]");
    let id_ok = check_id(cx, p, &format!("{path}.id"), &c.id, "change");
    check_reference(cx, p, &format!("{path}.reference"), &c.reference);
    if c.reason.trim().is_empty() {
        cx.error(
            p,
            &format!("{path}.reason"),
            format!("change `{}` needs a reason", c.id),
        );
    }
    let mut ok = id_ok;
    let at = match super::raw::parse_rfc3339(&c.at) {
        Ok(t) => t,
        Err(e) => {
            cx.error(p, &format!("{path}.at"), e);
            ok = false;
            Timestamp::UNIX_EPOCH
        }
    };
    let rollout_bp = match c
        .rollout
        .as_ref()
        .map(|r| super::raw::percent_to_bp(r.percent))
    {
        Some(Err(e)) => {
            cx.error(p, &format!("{path}.rollout.percent"), e);
            ok = false;
            None
        }
        Some(Ok(bp)) => Some(bp),
        None => None,
    };
    let mut on = FeatureSet::EMPTY;
    let mut off = FeatureSet::EMPTY;
    for (name, v) in &c.features.0 {
        match declared.feature_id(name) {
            Some(id) if v.0 => on.insert(id),
            Some(id) => off.insert(id),
            None => {
                ok = false;
                cx.error_key(
                    p,
                    &format!("{path}.features.{name}"),
                    format!(
                        "unknown feature `{name}`{}",
                        suggest(name, feature_names.iter().copied())
                    ),
                )
            }
        }
    }
    if c.status.is_none() && c.features.0.is_empty() {
        cx.warn(
            p,
            &format!("{path}.id"),
            format!("change `{}` sets neither `status` nor `features`", c.id),
        );
    }
    ok.then(|| Change {
        id: c.id.as_str().into(),
        at,
        status: c.status,
        features_on: on,
        features_off: off,
        reason: c.reason.as_str().into(),
        reference: c.reference.as_deref().map(Into::into),
        rollout_bp,
        mode: c.mode,
        public: c.public.unwrap_or(declared.public),
        origin: origin(p, &format!("{path}.id")),
    })
}

/// Whether the rules of `below` apply inside `above` (a level and everything under it).
fn within(below: &Jurisdiction, above: &Jurisdiction, groups: &[Group]) -> bool {
    use Jurisdiction::*;
    match (above, below) {
        (Global, _) => true,
        (a, b) if a == b => true,
        (Group(g), Country(c)) | (Group(g), Subdivision(c, _)) => {
            groups.iter().any(|x| x.name == *g && x.members.contains(c))
        }
        (Country(a), Subdivision(c, _)) => a == c,
        _ => false,
    }
}

/// A rule that serves (or limits) where an enacted red line applies is an error when
/// the red line is in force at `now` (or, for a change, at the change's instant), and a
/// warning when it only will be.
fn check_red_lines(
    cx: &mut Ctx,
    parsed: &[Parsed],
    levels: &[Level],
    groups: &[Group],
    now: Timestamp,
) {
    let file = |name: &Arc<str>| parsed.iter().find(|p| p.name == *name);
    for above in levels {
        for d in above
            .demands
            .iter()
            .filter(|d| d.is_red_line() && d.state == super::DemandState::Enacted)
        {
            for below in levels
                .iter()
                .filter(|l| within(&l.jurisdiction, &above.jurisdiction, groups))
            {
                let Some(p) = file(&below.file) else { continue };
                let what = format!(
                    "red line `{}` ({}) on `{}`, in force from {}",
                    d.id, d.kind, above.jurisdiction, d.effective
                );
                if let Some((s, o)) = &below.status {
                    if status_serves(*s) {
                        let path = if below.jurisdiction == Jurisdiction::Unknown {
                            "unknown.status"
                        } else {
                            "status"
                        };
                        if d.in_force(now) {
                            cx.error(p, path, format!("`status: {s}` for `{}` contradicts the {what}: the market is withdrawn", below.jurisdiction));
                        } else {
                            let _ = o;
                            cx.warn(p, path, format!("`status: {s}` for `{}` stops applying when the {what} takes effect", below.jurisdiction));
                        }
                    }
                }
                for c in below.changes.iter().filter(|c| c.mode == Mode::Enforce) {
                    if let Some(s) = c.status.filter(|s| status_serves(*s)) {
                        if c.at >= d.effective {
                            let (line, column) = (c.origin.line, c.origin.column);
                            cx.diags.push(Diagnostic {
                                file: c.origin.file.to_string(),
                                line,
                                column,
                                severity: Severity::Error,
                                message: format!(
                                    "change `{}` sets `status: {s}` for `{}` at {}, where the {what}",
                                    c.id, below.jurisdiction, c.at
                                ),
                            });
                        }
                    }
                }
            }
        }
    }
}
