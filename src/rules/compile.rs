//! Loading and compiling rules: files in name order → raw serde types → one checked
//! [`RuleSet`]. Every problem is collected with its file, line and column; nothing here
//! panics on input, and hostile YAML (aliases, deep nesting, huge files) is refused by
//! serde_yaml's limits and the size cap before any tree is built. A directory entry is
//! read only when it is a regular file whose real path lies inside the directory, so
//! loading never blocks on a FIFO and never echoes another file's content; folders are
//! read too, with the same rule, so no rules file is left out in silence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::diagnostic::{Diagnostic, Diagnostics, Severity};
use super::positions::Positions;
use super::raw::{RawAction, RawChange, RawDemand, RawFeature, RawFile, RawResponse, RawSignals};
use super::{
    Chain, Change, Demand, DemandState, Feature, FeatureId, FeatureSet, Group, KindResponse,
    LawEvent, Level, LevelId, Mode, Order, Origin, Response, RolloutStep, RuleSet, SignalKind,
    SignalRule, Source, Status, Trigger, When, MAX_FEATURES,
};
use crate::location::{CountryCode, Jurisdiction};

/// Largest rules file accepted.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most files accepted in one rules directory.
pub const MAX_FILES: usize = 4096;
/// Most folders read in one rules directory (itself included), and how deep they nest:
/// a rules directory pointed at a large tree by mistake is an error, not a long walk.
pub const MAX_FOLDERS: usize = 1024;
pub const MAX_DEPTH: usize = 16;

/// A rules file's name (as reported in diagnostics) and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Reads every `*.yaml`/`*.yml` entry of `dir` and of its folders, at any depth (not
/// hidden ones), in name order by the path relative to `dir`, and compiles them. Red
/// lines are checked at `now`. Each file is named `dir/relative/path.yaml` in
/// diagnostics and reasons.
///
/// Symlinks are followed (a Kubernetes ConfigMap volume holds `name -> ..data/name`,
/// and `folder -> ..data/folder` for keys with a folder), but an entry whose real path
/// lies outside `dir` is refused unread, so no other file (a token file, say) can reach
/// a diagnostic, the reload record or an API answer. An entry named like a rules file
/// that is not a regular file (a directory, a FIFO, a device), cannot be resolved or
/// read, or is larger than [`MAX_FILE_BYTES`] is an error, as is a folder that cannot be
/// read or is reached a second time (a symlink loop, a second name for a folder): never
/// a hang, never a file silently left out.
pub fn load_dir(dir: &Path, now: Timestamp) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    let shown = dir.display().to_string();
    let (root, listing) = match std::fs::canonicalize(dir)
        .and_then(|root| Ok((root.clone(), rules_entries(dir, &root)?)))
    {
        Ok(listed) => listed,
        Err(e) => {
            diags.push(whole_file(
                &shown,
                format!("cannot read rules directory: {e}"),
            ));
            return Err(diags);
        }
    };
    let Listing {
        files: names,
        refused,
    } = listing;
    for (rel, refusal) in refused {
        diags.push(whole_file(&dir.join(rel).display().to_string(), refusal));
    }
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

/// What [`rules_entries`] found: the rules files by name, relative to the directory, in
/// name order; and the folders it refused, with why.
struct Listing {
    files: Vec<PathBuf>,
    refused: Vec<(PathBuf, String)>,
}

/// The entries under `dir` (canonical: `root`) that are rules files by name (`*.yaml`,
/// `*.yml`, not hidden), in its folders too, relative to `dir`, in name order by that
/// path. Hidden entries are left out: a ConfigMap volume's `..data` and `..2026_…`
/// directories hold the files the visible names point at. A folder is entered when it
/// is a directory, or a symlink to one, whose real path lies inside `root` and has not
/// been entered before (directories first, then symlinks in name order, so the one
/// refused as a second name is always a symlink); otherwise it is refused (an error at
/// its name), as is a folder that cannot be read. Only an unreadable `dir` itself fails
/// the listing.
fn rules_entries(dir: &Path, root: &Path) -> std::io::Result<Listing> {
    let mut listing = Listing {
        files: Vec::new(),
        refused: Vec::new(),
    };
    let mut entered = vec![root.to_path_buf()];
    let mut pending = vec![(PathBuf::new(), std::fs::read_dir(dir)?)];
    // Symlinks to folders, entered once every directory has been.
    let mut links: Vec<PathBuf> = Vec::new();
    loop {
        let Some((rel, entries)) = pending.pop() else {
            links.sort_by(|a, b| b.as_os_str().cmp(a.as_os_str()));
            let Some(link) = links.pop() else { break };
            match enter(dir, root, &link, &mut entered) {
                Ok(entries) => pending.push((link, entries)),
                Err(why) => listing.refused.push((link, why)),
            }
            continue;
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    listing
                        .refused
                        .push((rel.clone(), format!("cannot read folder: {e}")));
                    continue;
                }
            };
            let name = entry.file_name();
            let b = name.as_encoded_bytes();
            if b.starts_with(b".") {
                continue;
            }
            let path = rel.join(&name);
            if b.ends_with(b".yaml") || b.ends_with(b".yml") {
                // Read (or refused) as a file, whatever it is: see `read_entry`.
                listing.files.push(path);
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => match enter(dir, root, &path, &mut entered) {
                    Ok(entries) => pending.push((path, entries)),
                    Err(why) => listing.refused.push((path, why)),
                },
                // A symlink to a folder (a ConfigMap key with a folder: `asia ->
                // ..data/asia`); a link to a file with another name is not the rules.
                Ok(t)
                    if t.is_symlink()
                        && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) =>
                {
                    links.push(path)
                }
                _ => {}
            }
        }
    }
    listing.files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    listing.refused.sort();
    Ok(listing)
}

/// Opens the folder `rel` of `dir` (canonical: `root`) for [`rules_entries`], unless it
/// lies outside `root`, was entered before, or is past [`MAX_DEPTH`] or [`MAX_FOLDERS`]:
/// then why it is refused.
fn enter(
    dir: &Path,
    root: &Path,
    rel: &Path,
    entered: &mut Vec<PathBuf>,
) -> Result<std::fs::ReadDir, String> {
    let path = dir.join(rel);
    let real = std::fs::canonicalize(&path).map_err(|e| FileRefusal::Resolve(e).to_string())?;
    if !real.starts_with(root) {
        return Err(FileRefusal::Outside.to_string());
    }
    if entered.contains(&real) {
        return Err(
            "folder reached a second time (a symlink loop, or a second name for a folder): refused"
                .into(),
        );
    }
    if rel.components().count() > MAX_DEPTH {
        return Err(format!(
            "folder nested deeper than {MAX_DEPTH} levels below the rules directory"
        ));
    }
    if entered.len() >= MAX_FOLDERS {
        return Err(format!(
            "more than {MAX_FOLDERS} folders in the rules directory"
        ));
    }
    let entries = std::fs::read_dir(&path).map_err(|e| format!("cannot read folder: {e}"))?;
    entered.push(real);
    Ok(entries)
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

/// `sha256:` over each file's relative name and contents, in name order.
fn version_of(files: &[SourceFile]) -> String {
    let mut h = Sha256::new();
    for (name, f) in in_name_order(files) {
        h.update(name.as_bytes());
        h.update([0]);
        h.update((f.text.len() as u64).to_be_bytes());
        h.update(f.text.as_bytes());
    }
    format!("sha256:{:x}", h.finalize())
}

/// The files with their names relative to the folder they all lie in (`fr.yaml` and
/// `in/in.yaml` for `regions/fr.yaml` and `regions/in/in.yaml`), ordered by that name:
/// the order they are compiled in and the names the version hashes, the same whether
/// the files were read from a directory or from git (`REV:regions/…`).
fn in_name_order(files: &[SourceFile]) -> Vec<(&str, &SourceFile)> {
    let cut = match files.split_first() {
        None => 0,
        Some((first, rest)) => {
            let a = first.name.as_bytes();
            let common = rest.iter().fold(a.len(), |n, f| {
                n.min(
                    a.iter()
                        .zip(f.name.as_bytes())
                        .take_while(|(x, y)| x == y)
                        .count(),
                )
            });
            // Back to a separator (ASCII, so a character boundary).
            a[..common]
                .iter()
                .rposition(|b| matches!(b, b'/' | b'\\'))
                .map_or(0, |i| i + 1)
        }
    };
    let mut named: Vec<(&str, &SourceFile)> = files.iter().map(|f| (&f.name[cut..], f)).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named
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
    /// The day (UTC) of the instant the rules are checked at, for `review_by`.
    today: jiff::civil::Date,
}

/// Reads a list of feature names as a set; the error is the index of the first unknown
/// name and the message for it.
type FeatureNames<'a> = dyn Fn(&[String]) -> Result<FeatureSet, (usize, String)> + 'a;

/// What the global file declares, which every level's rules are checked against.
struct Declared<'a> {
    feature_names: &'a [&'a str],
    kinds: &'a [&'a str],
    responses: &'a [KindResponse],
    feature_set: &'a FeatureNames<'a>,
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
    suggest_name(name, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// The candidate closest to `name` when one is close enough to be a slip of the pen
/// (a third of its letters or fewer differ).
pub fn suggest_name<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
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
        .map(|(_, c)| c.to_string())
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
    // Every structural error of the file, each where it stands (see `structure`).
    match super::structure::read(&f.text, &pos) {
        Ok(raw) => Some(Parsed {
            name: f.name.as_str().into(),
            raw,
            pos,
        }),
        Err(problems) => {
            for p in problems {
                diags.push(Diagnostic {
                    file: f.name.clone(),
                    line: p.line,
                    column: p.column,
                    severity: Severity::Error,
                    message: p.message,
                });
            }
            None
        }
    }
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
        today: now.to_zoned(jiff::tz::TimeZone::UTC).date(),
    };
    let version = version_of(files);
    let parsed: Vec<Parsed> = in_name_order(files)
        .into_iter()
        .filter_map(|(_, f)| parse_file(f, &mut cx.diags))
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
    let mut responses: Vec<KindResponse> = Vec::new();
    let feature_set = |list: &[String]| -> Result<FeatureSet, (usize, String)> {
        let mut set = FeatureSet::EMPTY;
        for (i, name) in list.iter().enumerate() {
            match feature_id(name) {
                Some(id) => set.insert(id),
                None => {
                    return Err((
                        i,
                        format!(
                            "unknown feature `{name}`{}",
                            suggest(name, feature_names.iter().copied())
                        ),
                    ))
                }
            }
        }
        Ok(set)
    };
    if let Some(g) = global {
        for (kind, r) in &g.raw.responses.0 {
            let path = format!("responses.{kind}");
            match compile_response(r, &feature_set) {
                Ok(response) => responses.push(KindResponse {
                    kind: kind.as_str().into(),
                    response,
                    trigger: r.trigger.unwrap_or_default(),
                }),
                Err((i, msg)) => {
                    cx.error(g, &format!("{path}.disable[{i}]"), msg);
                    responses.push(KindResponse {
                        kind: kind.as_str().into(),
                        response: Response::Withdraw,
                        trigger: Trigger::Law,
                    });
                }
            }
        }
    }
    let kinds_owned: Vec<Arc<str>> = responses.iter().map(|r| r.kind.clone()).collect();
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
                            crate::iso::did_you_mean(m, crate::iso::Accepted::COUNTRIES)
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
        feature_set: &feature_set,
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
    let signals = global
        .and_then(|g| g.raw.signals.as_ref().map(|raw| (g, raw)))
        .map_or_else(SignalRule::default, |(g, raw)| signal_rule(&mut cx, g, raw));
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
            ("signals", p.raw.signals.is_some()),
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
                let groups: Vec<&str> = group_names.iter().map(|g| &**g).collect();
                let accepted = crate::iso::Accepted {
                    subdivisions: true,
                    groups: &groups,
                };
                cx.error(
                    p,
                    "jurisdiction",
                    format!(
                        "unknown jurisdiction `{code}`: not an ISO 3166-1 country, an ISO 3166-2 subdivision or a declared group{}",
                        crate::iso::did_you_mean(code, accepted)
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
                        "`{code}` is not a jurisdiction code (`*`, `FR`, `US-CA` or a group name){}",
                        crate::iso::did_you_mean(code, crate::iso::Accepted::LOCATIONS)
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
    check_stacked_rollouts(&mut cx, &levels, &feature_names);

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

    let boundaries = boundaries(&levels);

    cx.diags.sort();
    if cx.diags.has_errors() {
        return Err(cx.diags);
    }
    let mut all = FeatureSet::EMPTY;
    for i in 0..features.len() {
        all.insert(i as FeatureId);
    }
    let rules = RuleSet {
        id: next_id(),
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
        signals,
    };
    Ok((rules, cx.diags))
}

/// The global file's `signals`: `address` among the signals that count (a signal named
/// twice is a warning, as a country named twice in a group).
fn signal_rule(cx: &mut Ctx, g: &Parsed, raw: &RawSignals) -> SignalRule {
    let mut rule = SignalRule {
        origin: Some(origin(g, "signals")),
        combine: raw.combine.unwrap_or_default(),
        ..SignalRule::default()
    };
    if let Some(list) = &raw.count {
        rule.count = [false; 3];
        for (i, kind) in list.iter().enumerate() {
            if rule.count[*kind as usize] {
                cx.warn(
                    g,
                    &format!("signals.count[{i}]"),
                    format!("`{kind}` is listed twice in `signals.count`"),
                );
            }
            rule.count[*kind as usize] = true;
        }
        if !rule.counts(SignalKind::Address) {
            cx.error_key(
                g,
                "signals.count",
                "`signals.count` must list `address`: a request that carries no other signal would have no jurisdiction".into(),
            );
            rule.count[SignalKind::Address as usize] = true;
        }
    }
    rule
}

/// A new rule-set id, unique in this process.
pub(super) fn next_id() -> u64 {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Every instant at which a decision may change: changes, their rollout steps, the
/// laws' dated events and the orders under them; sorted, without repeats.
pub(super) fn boundaries(levels: &[Level]) -> Vec<Timestamp> {
    let mut boundaries: Vec<Timestamp> = levels
        .iter()
        .flat_map(|l| {
            l.changes
                .iter()
                .flat_map(Change::instants)
                .chain(l.demands.iter().flat_map(Demand::instants))
        })
        .collect();
    boundaries.sort();
    boundaries.dedup();
    boundaries
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
    level.changes.sort_by_key(|c| c.at.utc);
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

fn compile_response(
    r: &RawResponse,
    feature_set: &FeatureNames<'_>,
) -> Result<Response, (usize, String)> {
    Ok(match &r.action {
        RawAction::Withdraw => Response::Withdraw,
        RawAction::Comply => Response::Comply,
        RawAction::Disable(list) => Response::Disable(feature_set(list)?),
    })
}

/// Parses an instant of the rules, reporting at `path`.
fn instant(cx: &mut Ctx, p: &Parsed, path: &str, v: &str) -> Option<When> {
    match super::raw::parse_instant(v) {
        Ok(w) => Some(w),
        Err(e) => {
            cx.error(p, path, e);
            None
        }
    }
}

fn text(v: &Option<String>) -> Option<Arc<str>> {
    v.as_deref().map(Into::into)
}

/// Words for a response in messages: `withdraw`, `comply`, `disable [a, b]`.
fn response_words(r: &Response, feature_names: &[&str]) -> String {
    match r {
        Response::Withdraw => "withdraw".into(),
        Response::Comply => "comply".into(),
        Response::Disable(set) => format!(
            "disable [{}]",
            set.iter()
                .map(|i| feature_names.get(i as usize).copied().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
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
    let mut ok = check_id(cx, p, &format!("{path}.id"), &d.id, "demand");
    check_reference(cx, p, &format!("{path}.reference"), &d.reference);

    // The legal history: the shorthand (`state` + `effective`) or dated events.
    let mut history: Vec<LawEvent> = Vec::new();
    let mut before = None;
    let mut planned = None;
    match (d.state, &d.effective, d.history.is_empty()) {
        (Some(state), Some(effective), true) => {
            let at = instant(cx, p, &format!("{path}.effective"), effective);
            ok &= at.is_some();
            let at = at.unwrap_or_else(|| When::utc(Timestamp::UNIX_EPOCH));
            match state {
                DemandState::Proposed => {
                    before = Some(DemandState::Proposed);
                    planned = Some(at);
                }
                DemandState::Enacted | DemandState::InForce => {
                    before = Some(DemandState::Enacted);
                    history.push(LawEvent {
                        state: DemandState::InForce,
                        at,
                        reference: None,
                        note: None,
                    });
                }
                DemandState::Rejected => {
                    before = Some(DemandState::Proposed);
                    history.push(LawEvent {
                        state: DemandState::Rejected,
                        at,
                        reference: None,
                        note: None,
                    });
                }
                DemandState::Repealed | DemandState::Amended => {
                    ok = false;
                    cx.error(
                        p,
                        &format!("{path}.state"),
                        format!(
                            "a law that was {state} needs its history, so that the past stays as it was: write `history: [{{state: in_force, at: <when it took force>}}, {{state: {}, at: <when it was {state}>}}]` instead of `state` and `effective`",
                            state.as_str()
                        ),
                    );
                }
            }
        }
        (None, None, false) => {
            for (j, e) in d.history.iter().enumerate() {
                let epath = format!("{path}.history[{j}]");
                check_reference(cx, p, &format!("{epath}.reference"), &e.reference);
                let Some(at) = instant(cx, p, &format!("{epath}.at"), &e.at) else {
                    ok = false;
                    continue;
                };
                if let Some(prev) = history.last() {
                    if at <= prev.at {
                        ok = false;
                        cx.error(
                            p,
                            &format!("{epath}.at"),
                            format!(
                                "history events are in time order: `{}` at {at} is not after `{}` at {}",
                                e.state.as_str(),
                                prev.state.as_str(),
                                prev.at
                            ),
                        );
                    }
                }
                history.push(LawEvent {
                    state: e.state,
                    at,
                    reference: text(&e.reference),
                    note: text(&e.note),
                });
            }
        }
        (None, None, true) => {
            ok = false;
            cx.error(
                p,
                &format!("{path}.id"),
                format!(
                    "demand `{}` needs `state` and `effective`, or a `history` of dated states",
                    d.id
                ),
            );
        }
        (Some(_), None, true) | (None, Some(_), true) => {
            ok = false;
            let missing = if d.state.is_some() {
                "effective"
            } else {
                "state"
            };
            cx.error(
                p,
                &format!("{path}.id"),
                format!(
                    "demand `{}` needs `{missing}` beside `{}`",
                    d.id,
                    if missing == "state" {
                        "effective"
                    } else {
                        "state"
                    }
                ),
            );
        }
        (_, _, false) => {
            ok = false;
            cx.error(
                p,
                &format!("{path}.history"),
                format!("demand `{}` has both a `history` and the shorthand `state`/`effective`: keep the history", d.id),
            );
        }
    }

    // Orders served under the law.
    let mut orders: Vec<Order> = Vec::new();
    for (j, o) in d.orders.iter().enumerate() {
        let opath = format!("{path}.orders[{j}]");
        check_reference(cx, p, &format!("{opath}.reference"), &o.reference);
        if o.id.trim().is_empty() {
            ok = false;
            cx.error(
                p,
                &format!("{opath}.id"),
                "order id must not be empty".into(),
            );
        }
        let received = instant(cx, p, &format!("{opath}.received"), &o.received);
        let challenged = o
            .challenged
            .as_deref()
            .map(|v| instant(cx, p, &format!("{opath}.challenged"), v));
        let withdrawn = o
            .withdrawn
            .as_deref()
            .map(|v| instant(cx, p, &format!("{opath}.withdrawn"), v));
        let (Some(received), Some(challenged), Some(withdrawn)) = (
            received,
            challenged.map_or(Some(None), |c| c.map(Some)),
            withdrawn.map_or(Some(None), |w| w.map(Some)),
        ) else {
            ok = false;
            continue;
        };
        for (name, later) in [("challenged", &challenged), ("withdrawn", &withdrawn)] {
            if let Some(later) = later.as_ref().filter(|l| **l < received) {
                ok = false;
                cx.error(
                    p,
                    &format!("{opath}.{name}"),
                    format!(
                        "order `{}` is {name} at {later}, before it was received at {received}",
                        o.id
                    ),
                );
            }
        }
        if orders.iter().any(|x| *x.id == *o.id) {
            ok = false;
            cx.error(
                p,
                &format!("{opath}.id"),
                format!("duplicate order id `{}` in demand `{}`", o.id, d.id),
            );
        }
        orders.push(Order {
            id: o.id.as_str().into(),
            received,
            challenged,
            withdrawn,
            reference: text(&o.reference),
            description: text(&o.description),
        });
    }

    let mut sources = Vec::new();
    for (j, src) in d.sources.iter().enumerate() {
        let spath = format!("{path}.sources[{j}]");
        if let Err(e) = super::raw::check_reference(&src.url) {
            cx.error(p, &format!("{spath}.url"), e.to_string());
        }
        if let Some(Err(e)) = src.archived.as_deref().map(super::raw::check_reference) {
            cx.error(p, &format!("{spath}.archived"), e.to_string());
        }
        let accessed = match src.accessed.as_deref().map(super::raw::parse_date) {
            Some(Err(e)) => {
                cx.error(p, &format!("{spath}.accessed"), e);
                None
            }
            Some(Ok(d)) => Some(d),
            None => None,
        };
        sources.push(Source {
            url: src.url.as_str().into(),
            archived: text(&src.archived),
            accessed,
            title: text(&src.title),
            original_title: text(&src.original_title),
        });
    }
    let review_by =
        match d.review_by.as_deref().map(super::raw::parse_date) {
            Some(Err(e)) => {
                cx.error(p, &format!("{path}.review_by"), e);
                None
            }
            Some(Ok(day)) => {
                if day < cx.today {
                    cx.warn(
                        p,
                        &format!("{path}.review_by"),
                        format!(
                        "demand `{}` was due for review by {day}{}: review it and move `review_by`",
                        d.id,
                        d.owner.as_deref().map(|o| format!(" (owner: {o})")).unwrap_or_default()
                    ),
                    );
                }
                Some(day)
            }
            None => None,
        };

    let Some(kind) = responses.iter().find(|r| *r.kind == *d.kind) else {
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

    // The demand's own response: never looser than its kind's.
    let (mut response, mut trigger, own_response) =
        (kind.response.clone(), kind.trigger, d.response.is_some());
    if let Some(r) = &d.response {
        match compile_response(r, declared.feature_set) {
            Err((j, msg)) => {
                ok = false;
                cx.error(p, &format!("{path}.response.disable[{j}]"), msg);
            }
            Ok(own) => {
                let own_trigger = r.trigger.unwrap_or(kind.trigger);
                let looser_response = !own.at_least_as_strict_as(&kind.response);
                let looser_trigger = own_trigger == Trigger::Order && kind.trigger == Trigger::Law;
                if looser_response || looser_trigger {
                    ok = false;
                    let names = declared.feature_names;
                    let (what, theirs) = if looser_response {
                        (
                            response_words(&own, names),
                            response_words(&kind.response, names),
                        )
                    } else {
                        (
                            "wait for an order".to_string(),
                            "fire on the law in force".to_string(),
                        )
                    };
                    cx.error(
                        p,
                        &format!("{path}.response"),
                        format!(
                            "demand `{}` would {what}, looser than `{}` in the global file ({theirs}): a demand's own response may only be stricter; loosening is a change to `responses.{}` in the global file, reviewed as such",
                            d.id, kind.kind, kind.kind
                        ),
                    );
                } else {
                    response = own;
                    trigger = own_trigger;
                }
            }
        }
    }
    if trigger == Trigger::Law && !orders.is_empty() {
        cx.warn(
            p,
            &format!("{path}.orders"),
            format!(
                "demand `{}` lists orders, but its response fires on the law in force (`trigger: law`); the orders change no decision",
                d.id
            ),
        );
    }

    let state = history
        .last()
        .map(|e| e.state)
        .or(before)
        .unwrap_or(DemandState::Proposed);
    let effective = history
        .iter()
        .find(|e| e.state.applies())
        .or(history.last())
        .map(|e| e.at.clone())
        .or(planned)
        .unwrap_or_else(|| When::utc(Timestamp::UNIX_EPOCH));
    ok.then(|| Demand {
        id: d.id.as_str().into(),
        kind: kind.kind.clone(),
        state,
        effective,
        history,
        before,
        orders,
        trigger,
        reference: text(&d.reference),
        law: text(&d.law),
        description: text(&d.description),
        sources,
        response,
        own_response,
        owner: text(&d.owner),
        ticket: text(&d.ticket),
        review_by,
        public: d.public.unwrap_or(declared.public),
        origin: origin(p, &format!("{path}.id")),
    })
}

/// Reads a percent as basis points, reporting at `path`.
fn percent(cx: &mut Ctx, p: &Parsed, path: &str, v: f64) -> Option<u32> {
    match super::raw::percent_to_bp(v) {
        Ok(bp) => Some(bp),
        Err(e) => {
            cx.error(p, path, e);
            None
        }
    }
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
    let at = instant(cx, p, &format!("{path}.at"), &c.at);
    ok &= at.is_some();
    let at = at.unwrap_or_else(|| When::utc(Timestamp::UNIX_EPOCH));
    let mut rollout = Vec::new();
    if let Some(r) = &c.rollout {
        match (r.percent, r.steps.is_empty()) {
            (Some(v), true) => match percent(cx, p, &format!("{path}.rollout.percent"), v) {
                Some(bp) => rollout.push(RolloutStep { at: at.clone(), bp }),
                None => ok = false,
            },
            (None, false) => {
                for (j, step) in r.steps.iter().enumerate() {
                    let spath = format!("{path}.rollout.steps[{j}]");
                    let (Some(when), Some(bp)) = (
                        instant(cx, p, &format!("{spath}.at"), &step.at),
                        percent(cx, p, &format!("{spath}.percent"), step.percent),
                    ) else {
                        ok = false;
                        continue;
                    };
                    let problem = if when < at {
                        Some(format!(
                            "rollout step at {when} is before the change itself ({at})"
                        ))
                    } else {
                        rollout.last().and_then(|prev: &RolloutStep| {
                            if when <= prev.at {
                                Some(format!(
                                    "rollout steps are in time order: {when} is not after {}",
                                    prev.at
                                ))
                            } else if bp < prev.bp {
                                Some(format!(
                                    "rollout steps only grow: {}% at {when} is below {}% at {}",
                                    bp as f64 / 100.0,
                                    prev.bp as f64 / 100.0,
                                    prev.at
                                ))
                            } else {
                                None
                            }
                        })
                    };
                    if let Some(msg) = problem {
                        ok = false;
                        cx.error(p, &format!("{spath}.at"), msg);
                    }
                    rollout.push(RolloutStep { at: when, bp });
                }
            }
            (Some(_), false) => {
                ok = false;
                cx.error(
                    p,
                    &format!("{path}.rollout"),
                    "a rollout has either `percent` or `steps`, not both".into(),
                );
            }
            (None, true) => {
                ok = false;
                cx.error(
                    p,
                    &format!("{path}.rollout"),
                    "a rollout needs `percent`, or `steps: [{at, percent}]`".into(),
                );
            }
        }
    }
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
        reference: text(&c.reference),
        rollout,
        mode: c.mode,
        public: c.public.unwrap_or(declared.public),
        origin: origin(p, &format!("{path}.id")),
    })
}

/// Two staged changes of one level that touch the same thing (the status, or a feature)
/// draw their keys independently: together they reach `1 - (1-a)(1-b)` of the keys, more
/// than either says. A warning at the later one, with the figure.
fn check_stacked_rollouts(cx: &mut Ctx, levels: &[Level], feature_names: &[&str]) {
    for level in levels {
        let staged: Vec<&Change> = level
            .changes
            .iter()
            .filter(|c| c.mode == Mode::Enforce && c.is_staged())
            .collect();
        for (k, b) in staged.iter().enumerate() {
            for a in &staged[..k] {
                let shared = a.features_on.union(a.features_off);
                let common = shared.intersection(b.features_on.union(b.features_off));
                let both_status = a.status.is_some() && b.status.is_some();
                if common.is_empty() && !both_status {
                    continue;
                }
                let what = if both_status {
                    "the status".to_string()
                } else {
                    common
                        .iter()
                        .map(|i| {
                            format!(
                                "`{}`",
                                feature_names.get(i as usize).copied().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let (pa, pb) = (a.max_bp() as f64 / 10_000.0, b.max_bp() as f64 / 10_000.0);
                let together = 1.0 - (1.0 - pa) * (1.0 - pb);
                cx.diags.push(Diagnostic {
                    file: b.origin.file.to_string(),
                    line: b.origin.line,
                    column: b.origin.column,
                    severity: Severity::Warning,
                    message: format!(
                        "changes `{}` ({}%) and `{}` ({}%) both roll out {what} on `{}`: each draws its own keys, so together they reach about {:.0}% of keys, not {}%; to stage one restriction, give one change `rollout.steps: [{{at, percent}}]`",
                        a.id,
                        pa * 100.0,
                        b.id,
                        pb * 100.0,
                        level.jurisdiction,
                        together * 100.0,
                        (pa.max(pb) * 100.0)
                    ),
                });
            }
        }
    }
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

/// A rule that serves (or limits) where a red line applies is an error when the red
/// line fires at `now` (or, for a change, at the change's instant), and a warning when it
/// only will (or may: a law waiting for an order).
fn check_red_lines(
    cx: &mut Ctx,
    parsed: &[Parsed],
    levels: &[Level],
    groups: &[Group],
    now: Timestamp,
) {
    let file = |name: &Arc<str>| parsed.iter().find(|p| p.name == *name);
    for above in levels {
        for d in above.demands.iter().filter(|d| d.is_red_line()) {
            // When it fires: now, from a later instant, or only once an order comes.
            let fires_now = d.in_force(now);
            let next = d.first_in_force_from(now);
            let waits_for_order = d.trigger == Trigger::Order
                && !fires_now
                && d.history.iter().any(|e| e.state.applies());
            if !fires_now && next.is_none() && !waits_for_order {
                continue;
            }
            for below in levels
                .iter()
                .filter(|l| within(&l.jurisdiction, &above.jurisdiction, groups))
            {
                let Some(p) = file(&below.file) else { continue };
                let when = match next {
                    _ if fires_now && d.effective <= now => {
                        format!("in force from {}", d.effective)
                    }
                    Some(t) if fires_now || t == now => "in force".to_string(),
                    Some(t) => format!("in force from {}", When::utc(t)),
                    None => "firing once an order is received under the law".to_string(),
                };
                let what = format!(
                    "red line `{}` ({}) on `{}`, {when}",
                    d.id, d.kind, above.jurisdiction
                );
                if let Some((s, _)) = &below.status {
                    if status_serves(*s) {
                        let path = if below.jurisdiction == Jurisdiction::Unknown {
                            "unknown.status"
                        } else {
                            "status"
                        };
                        if fires_now {
                            cx.error(p, path, format!("`status: {s}` for `{}` contradicts the {what}: the market is withdrawn", below.jurisdiction));
                        } else {
                            cx.warn(p, path, format!("`status: {s}` for `{}` stops applying when the {what} takes effect", below.jurisdiction));
                        }
                    }
                }
                for c in below.changes.iter().filter(|c| c.mode == Mode::Enforce) {
                    if let Some(s) = c.status.filter(|s| status_serves(*s)) {
                        if d.in_force(c.at.utc) {
                            cx.diags.push(Diagnostic {
                                file: c.origin.file.to_string(),
                                line: c.origin.line,
                                column: c.origin.column,
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
