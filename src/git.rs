//! Reading a rules directory as it was at a git revision, through the `git` command line
//! (`rev-parse`, `ls-tree`, `cat-file`; `log` for the commits of a history), into in-memory [`SourceFile`]s for
//! [`crate::rules::compile`]. Never writes to the repository and never checks out.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::rules::{SourceFile, MAX_FILES, MAX_FILE_BYTES};

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

/// Reads the `*.yaml`/`*.yml` files (not hidden ones) directly in `path` (relative to
/// the repository's top directory) at revision `rev`; an entry with such a name that is
/// not a regular file (a symlink, a directory) is an error, as in a rules directory. Files are named `REV:PATH/NAME`,
/// git's own notation, so diagnostics and reasons point at the revision.
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
    let listing = git(repo, &["ls-tree", "--full-tree", "-l", "-z", &tree]).map_err(|_| {
        GitError::NotADirectory {
            rev: rev.into(),
            path: path.into(),
        }
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
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if name.starts_with('.') || !yaml {
            continue;
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
