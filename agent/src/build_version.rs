//! The version `pilot --version` prints: the package version and the git commit it was built
//! from, `0.1.0 (git 34efba1, 2026-12-01)` (the commit's date; `34efba1-dirty` when tracked
//! files had changes), or the package version alone outside a git checkout (a source tarball).
//! Included by build.rs, and by the library's unit tests.
//!
//! By hand, not vergen-gitcl: in a `git worktree` it looks for the branch ref under the
//! worktree's own git dir, so a commit there would not rebuild (refs live in the common dir).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The commit a checkout is at.
#[derive(Debug)]
pub struct Git {
    /// Short hash, `-dirty` appended when tracked files differ from it.
    pub commit: String,
    /// Committer date, YYYY-MM-DD (the same for every build of the commit).
    pub date: String,
    /// Files whose change means another commit or another dirty state: HEAD, the ref it points
    /// to (or packed-refs), the index.
    pub watch: Vec<PathBuf>,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    // No optional locks: `git status` must not rewrite the index of the tree being built.
    let out = Command::new("git").arg("-C").arg(dir).args(args).env("GIT_OPTIONAL_LOCKS", "0").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit `workspace` is checked out at; None outside a git checkout of it (no git, no
/// repository, or a tarball unpacked inside another project's repository).
pub fn describe(workspace: &Path) -> Option<Git> {
    let top = PathBuf::from(git(workspace, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != workspace.canonicalize().ok()? {
        return None;
    }
    let hash = git(workspace, &["rev-parse", "--short=7", "HEAD"])?;
    let date = git(workspace, &["show", "-s", "--format=%cs", "HEAD"])?;
    let dirty = !git(workspace, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    let absolute = |p: String| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { workspace.join(p) };
    let git_dir = absolute(git(workspace, &["rev-parse", "--git-dir"])?);
    let common_dir = absolute(git(workspace, &["rev-parse", "--git-common-dir"])?);
    let mut watch = vec![git_dir.join("HEAD"), git_dir.join("index")];
    if let Some(head_ref) = git(workspace, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&head_ref);
        watch.push(if loose.exists() { loose } else { common_dir.join("packed-refs") });
    }
    watch.retain(|p| p.exists());
    Some(Git { commit: if dirty { format!("{hash}-dirty") } else { hash }, date, watch })
}

/// `0.1.0 (git 34efba1, 2026-12-01)`, or `0.1.0` without a commit.
pub fn version(package: &str, git: Option<&Git>) -> String {
    match git {
        Some(g) => format!("{package} (git {}, {})", g.commit, g.date),
        None => package.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        let ok = Command::new("git").arg("-C").arg(dir).args(args).output().expect("git").status.success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn names_the_commit_its_date_and_changes_and_nothing_outside_git() {
        let d = tempfile::tempdir().unwrap();
        assert!(describe(d.path()).is_none(), "not a checkout");
        assert_eq!(version("0.1.0", None), "0.1.0");

        run(d.path(), &["init", "-q"]);
        std::fs::write(d.path().join("a"), "1").unwrap();
        run(d.path(), &["add", "a"]);
        let commit = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"];
        let dated = [("GIT_COMMITTER_DATE", "2026-12-01T10:00:00Z"), ("GIT_AUTHOR_DATE", "2026-12-01T10:00:00Z")];
        let ok = Command::new("git").arg("-C").arg(d.path()).args(commit).envs(dated).output().unwrap().status.success();
        assert!(ok);
        let g = describe(d.path()).expect("a checkout");
        assert_eq!(g.commit.len(), 7, "{g:?}");
        assert_eq!(version("0.1.0", Some(&g)), format!("0.1.0 (git {}, 2026-12-01)", g.commit));
        assert!(g.watch.iter().any(|p| p.ends_with("HEAD")) && g.watch.len() == 3, "HEAD, the index and the branch ref: {g:?}");

        std::fs::write(d.path().join("untracked"), "").unwrap();
        assert!(!describe(d.path()).unwrap().commit.ends_with("-dirty"), "untracked files do not count");
        std::fs::write(d.path().join("a"), "2").unwrap();
        assert_eq!(describe(d.path()).unwrap().commit, format!("{}-dirty", g.commit));

        // A tree unpacked inside another repository is not its commit.
        std::fs::create_dir(d.path().join("tarball")).unwrap();
        assert!(describe(&d.path().join("tarball")).is_none());
    }
}
