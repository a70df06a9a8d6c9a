//! Reading a rules directory as it was at a git revision, through the `git` command line
//! (`rev-parse`, `ls-tree`, `cat-file`; `log` for the commits of a history), into in-memory [`SourceFile`]s for
//! [`crate::rules::compile`]. Never writes to the repository and never checks out.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::rules::{SourceFile, MAX_DEPTH, MAX_FILES, MAX_FILE_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`git {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("`{rev}` is not a revision of the repository at {repo}")]
    BadRevision { rev: String, repo: PathBuf },
    #[error("`{path}` is not a directory at revision `{rev}`")]
    NotADirectory { rev: String, path: String },
    #[error("`{path}` at revision `{rev}` holds no `*.yaml` or `*.yml` file")]
    NoRulesFiles { rev: String, path: String },
    #[error("{name}: file is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes")]
    TooBig { name: String, size: u64 },
    #[error("`{path}` at `{rev}` holds {count} rules files, over the limit of {MAX_FILES}")]
    TooManyFiles {
        rev: String,
        path: String,
        count: usize,
    },
    #[error("{name}: file is not valid UTF-8")]
    NotUtf8 { name: String },
    /// A symlink (mode `120000`), a directory or a submodule named like a rules file:
    /// refused as the directory loader refuses one, never read as rules.
    #[error("{name}: not a regular file at this revision (git mode {mode}); rules files must be regular files")]
    NotARegularFile { name: String, mode: String },
    /// A folder the rules cannot be read from at a revision: a submodule (its files are
    /// not in the revision), a symlink to a folder (not followed at a revision), or one
    /// nested too deep. Refused, never left out in silence.
    #[error("{name}: {why}")]
    Folder { name: String, why: String },
}

fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(GitError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The top directory of the work tree that contains `dir`.
pub fn toplevel(dir: &Path) -> Result<PathBuf, GitError> {
    let out = git(dir, &["rev-parse", "--show-toplevel"])?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim()))
}

/// Reads the `*.yaml`/`*.yml` files (not hidden ones, and not in hidden folders) in
/// `path` (relative to the repository's top directory) and in its folders at any depth,
/// at revision `rev`, in name order by the path relative to `path`, as the directory
/// loader reads a rules directory. An entry with such a name that is not a regular file
/// (a symlink, a directory) is an error, as in a rules directory; so are a submodule, a
/// symlink to a folder of the revision (not followed here) and a folder nested deeper
/// than [`MAX_DEPTH`]. Files are named `REV:PATH/RELATIVE/NAME`, git's own notation, so
/// diagnostics and reasons point at the revision.
pub fn read_rules_at(repo: &Path, rev: &str, path: &str) -> Result<Vec<SourceFile>, GitError> {
    if rev.starts_with('-') {
        return Err(GitError::BadRevision {
            rev: rev.into(),
            repo: repo.into(),
        });
    }
    let commit = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| GitError::BadRevision {
        rev: rev.into(),
        repo: repo.into(),
    })?;
    let commit = String::from_utf8_lossy(&commit).trim().to_string();
    let path = path.trim_matches('/');
    let tree = if path.is_empty() || path == "." {
        format!("{commit}^{{tree}}")
    } else {
        format!("{commit}:{path}")
    };
    // `--full-tree`: without it, git filters the listing by the current directory.
    // `-r -t`: every file below, and the folders on the way.
    let listing = git(
        repo,
        &["ls-tree", "--full-tree", "-r", "-t", "-l", "-z", &tree],
    )
    .map_err(|_| GitError::NotADirectory {
        rev: rev.into(),
        path: path.into(),
    })?;
    let shown = |name: &str| {
        if path.is_empty() || path == "." {
            format!("{rev}:{name}")
        } else {
            format!("{rev}:{path}/{name}")
        }
    };
    // Entries: `<mode> SP <type> SP <object> SP+ <size> TAB <name> NUL`.
    let mut entries: Vec<(String, String, u64)> = Vec::new();
    for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, name)) = entry.split_once('\t') else {
            continue;
        };
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let [mode, kind, object, size] = fields.as_slice() else {
            continue;
        };
        // Hidden entries, and everything in hidden folders, are not the rules.
        if name.split('/').any(|c| c.starts_with('.')) {
            continue;
        }
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let folder = |why: String| GitError::Folder {
            name: shown(name),
            why,
        };
        if !yaml {
            match (*kind, *mode) {
                ("tree", _) if name.split('/').count() > MAX_DEPTH => {
                    return Err(folder(format!(
                        "folder nested deeper than {MAX_DEPTH} levels below the rules directory"
                    )))
                }
                ("commit", _) => {
                    return Err(folder(
                        "a submodule: its files are not part of the revision, so the rules cannot be read from it".into(),
                    ))
                }
                ("blob", "120000") if points_at_folder(repo, &commit, path, name, object)? => {
                    return Err(folder(
                        "a symlink to a folder: symlinks are not followed at a revision; put the folder itself here".into(),
                    ))
                }
                _ => continue,
            }
        }
        // A symlink is a blob holding its target's path: never read it as rules.
        if *kind != "blob" || !matches!(*mode, "100644" | "100755") {
            return Err(GitError::NotARegularFile {
                name: shown(name),
                mode: mode.to_string(),
            });
        }
        entries.push((
            name.to_string(),
            object.to_string(),
            size.parse().unwrap_or(u64::MAX),
        ));
    }
    if entries.is_empty() {
        return Err(GitError::NoRulesFiles {
            rev: rev.into(),
            path: path.into(),
        });
    }
    if entries.len() > MAX_FILES {
        return Err(GitError::TooManyFiles {
            rev: rev.into(),
            path: path.into(),
            count: entries.len(),
        });
    }
    entries.sort();
    let mut files = Vec::with_capacity(entries.len());
    for (name, object, size) in entries {
        let name = shown(&name);
        if size > MAX_FILE_BYTES as u64 {
            return Err(GitError::TooBig { name, size });
        }
        let bytes = git(repo, &["cat-file", "blob", &object])?;
        let text =
            String::from_utf8(bytes).map_err(|_| GitError::NotUtf8 { name: name.clone() })?;
        files.push(SourceFile { name, text });
    }
    Ok(files)
}

/// Whether the symlink `name` (under `path`, at `commit`, its blob `object`) points at a
/// folder of the revision. A target outside the repository, or an absolute one, is not
/// in the revision (and a link to a file is not a rules file by its name): `false`.
fn points_at_folder(
    repo: &Path,
    commit: &str,
    path: &str,
    name: &str,
    object: &str,
) -> Result<bool, GitError> {
    let target = git(repo, &["cat-file", "blob", object])?;
    let target = String::from_utf8_lossy(&target);
    if target.starts_with('/') {
        return Ok(false);
    }
    // Resolved by its words from the link's folder, relative to the top directory.
    let mut parts: Vec<&str> = path
        .split('/')
        .chain(name.split('/'))
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Ok(false);
                }
            }
            c => parts.push(c),
        }
    }
    let spec = format!("{commit}:{}", parts.join("/"));
    Ok(git(repo, &["cat-file", "-t", &spec]).is_ok_and(|t| t.trim_ascii() == b"tree"))
}

/// The path of `dir` inside its work tree (`regions/`; empty at the top), for
/// [`read_rules_at`] and [`revisions`].
pub fn prefix(dir: &Path) -> Result<String, GitError> {
    let out = git(dir, &["rev-parse", "--show-prefix"])?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The rules at each of [`revisions`], compiled as of the commit's time: the commit, its
/// time, and the rule set or why it does not compile (such a commit was never in
/// service; callers leave it out with a warning).
pub type RulesAt = (
    String,
    jiff::Timestamp,
    Result<crate::rules::RuleSet, crate::rules::Diagnostics>,
);

/// Every revision of the rules at `path` from `base` on ([`revisions`]), compiled.
pub fn rules_history(repo: &Path, base: &str, path: &str) -> Result<Vec<RulesAt>, GitError> {
    let mut out = Vec::new();
    for (commit, t) in revisions(repo, base, path)? {
        let files = read_rules_at(repo, &commit, path)?;
        let compiled = crate::rules::compile(&files, t).map(|(r, _)| r);
        out.push((commit, t, compiled));
    }
    Ok(out)
}

/// The commits that make the history of the rules at `path` from `base` on: `base`
/// itself, then every first-parent commit after it up to `HEAD` that touched `path`,
/// oldest first, each with its committer time (when it landed on the branch, as near
/// as git knows to when it came into service).
pub fn revisions(
    repo: &Path,
    base: &str,
    path: &str,
) -> Result<Vec<(String, jiff::Timestamp)>, GitError> {
    if base.starts_with('-') {
        return Err(GitError::BadRevision {
            rev: base.into(),
            repo: repo.into(),
        });
    }
    let bad = || GitError::BadRevision {
        rev: base.into(),
        repo: repo.into(),
    };
    let base_commit = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{base}^{{commit}}"),
        ],
    )
    .map_err(|_| bad())?;
    let base_commit = String::from_utf8_lossy(&base_commit).trim().to_string();
    let path = path.trim_matches('/');
    let path = if path.is_empty() { "." } else { path };
    let mut out = git(repo, &["log", "-1", "--format=%H %ct", &base_commit])?;
    out.push(b'\n');
    out.extend(git(
        repo,
        &[
            "log",
            "--reverse",
            "--first-parent",
            "--format=%H %ct",
            &format!("{base_commit}..HEAD"),
            "--",
            &format!(":(top){path}"),
        ],
    )?);
    let mut revs = Vec::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let Some((hash, secs)) = line.trim().split_once(' ') else {
            continue;
        };
        let t = secs
            .parse::<i64>()
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .ok_or_else(|| GitError::Failed {
                args: "log --format=%H %ct".into(),
                stderr: format!("unexpected output `{line}`"),
            })?;
        revs.push((hash.to_string(), t));
    }
    Ok(revs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git runs");
        assert!(ok.status.success(), "git {args:?}: {ok:?}");
    }

    fn commit(dir: &Path, message: &str) {
        run(
            dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                message,
            ],
        );
    }

    #[test]
    fn revisions_lists_the_base_and_the_commits_that_touched_the_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        run(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir(d.join("regions")).unwrap();
        std::fs::write(d.join("regions/a.yaml"), "a: 1\n").unwrap();
        run(d, &["add", "."]);
        commit(d, "one");
        std::fs::write(d.join("README"), "x").unwrap();
        run(d, &["add", "."]);
        commit(d, "not the rules");
        std::fs::write(d.join("regions/a.yaml"), "a: 2\n").unwrap();
        run(d, &["add", "."]);
        commit(d, "two");
        let revs = revisions(d, "HEAD~2", "regions").unwrap();
        assert_eq!(revs.len(), 2, "{revs:?}");
        let head = git(d, &["rev-parse", "HEAD"]).unwrap();
        assert_eq!(revs[1].0, String::from_utf8_lossy(&head).trim());
        assert!(revs[0].1 <= revs[1].1);
        // From a subdirectory too: the path is relative to the top directory.
        std::fs::create_dir(d.join("sub")).unwrap();
        assert_eq!(
            revisions(&d.join("sub"), "HEAD~2", "regions")
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            revisions(d, "--all", "regions"),
            Err(GitError::BadRevision { .. })
        ));
        assert!(matches!(
            revisions(d, "nope", "regions"),
            Err(GitError::BadRevision { .. })
        ));
    }

    #[test]
    fn reads_files_at_a_revision_and_refuses_bad_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        run(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir(d.join("regions")).unwrap();
        std::fs::write(d.join("regions/a.yaml"), "first: 1\n").unwrap();
        std::fs::write(d.join("regions/notes.txt"), "x").unwrap();
        std::fs::write(d.join("regions/.hidden.yaml"), "x").unwrap();
        run(d, &["add", "."]);
        commit(d, "one");
        std::fs::write(d.join("regions/a.yaml"), "second: 2\n").unwrap();
        std::fs::write(d.join("regions/b.yml"), "b: 1\n").unwrap();
        run(d, &["add", "."]);
        commit(d, "two");

        let files = read_rules_at(d, "HEAD~1", "regions").unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["HEAD~1:regions/a.yaml"]);
        assert_eq!(files[0].text, "first: 1\n");
        let files = read_rules_at(d, "main", "regions/").unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].name, "main:regions/b.yml");

        assert!(matches!(
            read_rules_at(d, "no-such-rev", "regions"),
            Err(GitError::BadRevision { .. })
        ));
        assert!(matches!(
            read_rules_at(d, "--output=x", "regions"),
            Err(GitError::BadRevision { .. })
        ));
        std::fs::create_dir(d.join("sub")).unwrap();
        let from_sub = read_rules_at(&d.join("sub"), "HEAD", "regions").unwrap();
        assert_eq!(from_sub.len(), 2, "paths are relative to the top directory");
        std::fs::write(d.join("sub/x.txt"), "x").unwrap();
        run(d, &["add", "."]);
        commit(d, "three");
        assert!(matches!(
            read_rules_at(d, "HEAD", "sub"),
            Err(GitError::NoRulesFiles { .. })
        ));
        assert!(matches!(
            read_rules_at(d, "HEAD", "nowhere"),
            Err(GitError::NotADirectory { .. })
        ));
        assert!(matches!(
            read_rules_at(d, "HEAD", "regions/a.yaml"),
            Err(GitError::NotADirectory { .. })
        ));
    }

    /// Folders are read as the directory loader reads them: every rules file below, in
    /// name order by the relative path, hidden folders left out; a symlink to a folder
    /// is refused (not followed at a revision), a symlink to a file with another name
    /// is not the rules. The version is the directory's.
    #[cfg(unix)]
    #[test]
    fn folders_are_read_as_the_directory_loader_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        run(d, &["init", "-q", "-b", "main"]);
        let global = "features:\n  payments: { default: on }\nresponses:\n  data_localization: { disable: [payments] }\n";
        std::fs::create_dir_all(d.join("regions/asia/south")).unwrap();
        std::fs::create_dir_all(d.join("regions/.hidden")).unwrap();
        std::fs::write(d.join("regions/_global.yaml"), global).unwrap();
        std::fs::write(d.join("regions/in.yml"), "jurisdiction: IN\n").unwrap();
        std::fs::write(d.join("regions/asia/south/lk.yaml"), "jurisdiction: LK\n").unwrap();
        std::fs::write(d.join("regions/asia/jp.yaml"), "jurisdiction: JP\n").unwrap();
        std::fs::write(d.join("regions/.hidden/x.yaml"), "jurisdiction: XX\n").unwrap();
        std::fs::write(d.join("notes.md"), "x").unwrap();
        std::os::unix::fs::symlink("../notes.md", d.join("regions/README")).unwrap();
        run(d, &["add", "."]);
        commit(d, "folders");
        let files = read_rules_at(d, "HEAD", "regions").unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "HEAD:regions/_global.yaml",
                "HEAD:regions/asia/jp.yaml",
                "HEAD:regions/asia/south/lk.yaml",
                "HEAD:regions/in.yml",
            ]
        );
        let now = jiff::Timestamp::now();
        let from_git = crate::rules::compile(&files, now).unwrap().0;
        let from_dir = crate::rules::load_dir(&d.join("regions"), now).unwrap().0;
        assert_eq!(from_git.version(), from_dir.version());

        std::os::unix::fs::symlink("asia", d.join("regions/again")).unwrap();
        run(d, &["add", "."]);
        commit(d, "a second name");
        assert_eq!(
            read_rules_at(d, "HEAD", "regions").unwrap_err().to_string(),
            "HEAD:regions/again: a symlink to a folder: symlinks are not followed at a revision; put the folder itself here"
        );
    }

    /// As the directory loader: a symlink or a directory named like a rules file is
    /// refused, never read as rules (a symlink's blob is its target's path).
    #[cfg(unix)]
    #[test]
    fn symlinks_and_directories_named_like_rules_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        run(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir(d.join("regions")).unwrap();
        std::fs::write(d.join("regions/a.yaml"), "a: 1\n").unwrap();
        std::os::unix::fs::symlink("../secret.txt", d.join("regions/b.yaml")).unwrap();
        run(d, &["add", "."]);
        commit(d, "link");
        assert_eq!(
            read_rules_at(d, "HEAD", "regions").unwrap_err().to_string(),
            "HEAD:regions/b.yaml: not a regular file at this revision (git mode 120000); rules files must be regular files"
        );
        run(d, &["rm", "-q", "regions/b.yaml"]);
        std::fs::create_dir(d.join("regions/c.yaml")).unwrap();
        std::fs::write(d.join("regions/c.yaml/x"), "x").unwrap();
        run(d, &["add", "."]);
        commit(d, "dir");
        assert!(matches!(
            read_rules_at(d, "HEAD", "regions"),
            Err(GitError::NotARegularFile { mode, .. }) if mode == "040000"
        ));
    }
}
