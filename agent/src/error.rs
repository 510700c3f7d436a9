//! Errors and exit codes (a contract: runbooks branch on them). Bad input (flags, pids,
//! cgroups, policies) is a `UsageError` and exits 2; a kernel that cannot contain a pilot is a
//! `KernelError` and exits 5; anything else is the agent failing and exits 1. The outcomes of
//! a pilot (pass, blocked, command failed) are exit statuses too, but not errors.
//! A file that cannot be read or written is a `FileError`, which says which file, what its
//! errno means there, what was kept and what to do.
use std::fmt;

/// `pilot run`/`check`: the pilot passed (or warned); `commit`: done.
pub const EXIT_PASS: i32 = 0;
/// Exit status when the agent itself failed.
pub const EXIT_AGENT: i32 = 1;
/// Exit status for bad usage or input.
pub const EXIT_USAGE: i32 = 2;
/// `pilot run`/`check`: blocked by policy; `commit`: refused.
pub const EXIT_BLOCKED: i32 = 3;
/// `pilot run`/`commit`: the command failed (nonzero exit, killed, timed out).
pub const EXIT_COMMAND_FAILED: i32 = 4;
/// Exit status of `pilot run` on a kernel that cannot contain a pilot (`pilot doctor` says why).
pub const EXIT_KERNEL: i32 = 5;
/// `pilot doctor`: not even `pilot trace` works on this kernel.
pub const EXIT_TRACE_UNAVAILABLE: i32 = 6;

/// Bad input: the message says what to do about it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The kernel lacks what containment needs: the message names what is missing.
#[derive(Debug)]
pub struct KernelError(pub String);

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KernelError {}

/// The exit status an error maps to.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.downcast_ref::<KernelError>().is_some()) {
        EXIT_KERNEL
    } else if err.chain().any(|e| e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<FileError>().is_some_and(|f| f.usage)) {
        EXIT_USAGE
    } else {
        EXIT_AGENT
    }
}

/// One line: the error and its causes, outermost first.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
}

/// Where a file of pilot lives, for advice: what it is, and how the user picks another place.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// "the run directory", "the journal"...
    pub what: &'static str,
    /// How to put it elsewhere ("give --out DIR"), if the user can.
    pub elsewhere: Option<&'static str>,
}

/// Files of a run directory (`pilot run`, `pilot trace --out`, `pilot merge --out`).
pub const RUN_DIR: Place = Place { what: "the run directory", elsewhere: Some("give --out DIR") };
/// The journal (`PILOT_JOURNAL`).
pub const JOURNAL: Place = Place { what: "the journal", elsewhere: Some("set PILOT_JOURNAL=FILE") };
/// The page of `pilot report`.
pub const REPORT: Place = Place { what: "the report", elsewhere: Some("give --html FILE") };
/// The `--export jsonl:PATH` stream.
pub const EXPORT: Place = Place { what: "the --export file", elsewhere: Some("give --export jsonl:PATH") };
/// The daemon's `state_dir` (run logs).
pub const DAEMON_STATE: Place = Place { what: "the daemon's state directory", elsewhere: Some("set state_dir in the config (--config FILE)") };
/// The daemon's socket.
pub const DAEMON_SOCKET: Place = Place { what: "the daemon's socket", elsewhere: Some("set socket in the config (--config FILE)") };
/// The daemon's configuration file.
pub const CONFIG: Place = Place { what: "the configuration", elsewhere: Some("give --config FILE") };
/// Files of `pilot generate --dir DIR`.
pub const GENERATED: Place = Place { what: "the output directory", elsewhere: Some("give --dir DIR") };
/// A file pilot only reads (a run directory given as input, a policy): nothing to put elsewhere.
pub const INPUT: Place = Place { what: "the input", elsewhere: None };

/// A file operation that failed, said as advice: which file, what the error means there, what
/// was kept and what to do, e.g. `writing /x/run/graph.json: no space left on device (os error
/// 28): the run directory's filesystem is full; kept: events.jsonl, summary.json; free space
/// there or give --out DIR on another filesystem`.
#[derive(Debug)]
pub struct FileError {
    /// "writing", "creating", "opening", "reading".
    doing: &'static str,
    path: std::path::PathBuf,
    err: std::io::Error,
    place: Place,
    kept: Option<Vec<String>>,
    usage: bool,
}

impl FileError {
    pub fn new(doing: &'static str, path: &std::path::Path, err: std::io::Error, place: Place) -> FileError {
        FileError { doing, path: path.to_path_buf(), err, place, kept: None, usage: false }
    }

    /// What is left for the user (files of the run directory that are complete).
    pub fn kept(mut self, kept: Vec<String>) -> FileError {
        self.kept = Some(kept);
        self
    }

    /// Bad input (exit 2): a place the user gave that cannot be used, before anything ran.
    pub fn usage(mut self) -> FileError {
        self.usage = true;
        self
    }

    /// What the errno means for this file, and what to do about it.
    fn advice(&self) -> (Option<String>, Option<String>) {
        let reading = self.doing.starts_with("reading");
        // Another place is a fix for writing; a file to read is where it is.
        let Place { what, elsewhere } = self.place;
        let elsewhere = elsewhere.filter(|_| !reading);
        let or_elsewhere = |how: &str| elsewhere.map(|e| format!("{e} {how}"));
        let either = |fix: &str, how: &str| Some(match elsewhere {
            Some(e) => format!("{fix} or {e} {how}"),
            None => fix.to_string(),
        });
        let uid = unsafe { libc::geteuid() };
        let as_root = if uid == 0 { "" } else { "run pilot as root, or " };
        let (meaning, todo) = match self.err.raw_os_error() {
            Some(libc::ENOSPC) => (format!("{what}'s filesystem is full"), either("free space there", "on another filesystem")),
            Some(libc::EDQUOT) => (format!("the disk quota of {what}'s filesystem is used up"), either("free space there, raise the quota", "on another filesystem")),
            Some(libc::EROFS) => (format!("{what} is on a read-only filesystem"), or_elsewhere("on a writable filesystem")),
            Some(libc::EACCES | libc::EPERM) if reading => (format!("pilot (uid {uid}) may not read it"), Some(format!("{as_root}check its owner and mode"))),
            // Root meets these too: NFS root squash, `chattr +i`/`+a`, an LSM.
            Some(libc::EACCES | libc::EPERM) => (
                format!("pilot (uid {uid}) may not write there (owner and mode, an immutable or append-only attribute, a security module)"),
                either(&format!("{as_root}fix the permissions (ls -ld, lsattr)"), "somewhere writable"),
            ),
            Some(libc::ENOENT) if reading => ("it does not exist".into(), Some("check the path".into())),
            Some(libc::ENOENT) => ("a directory on the way to it does not exist".into(), either("create it", "naming an existing directory")),
            Some(libc::ENOTDIR) => ("a part of the path is a file, not a directory".into(), or_elsewhere("naming a directory").or(Some("check the path".into()))),
            Some(libc::EISDIR) => ("it is a directory".into(), or_elsewhere("naming a file").or(Some("give a file".into()))),
            // mkdir: the path (or a part of it) is taken by a file.
            Some(libc::EEXIST) => ("something that is not a directory is in the way".into(), either("remove it", "naming a new path")),
            Some(libc::EMFILE | libc::ENFILE) => ("too many open files".into(), Some("raise the limit (ulimit -n; LimitNOFILE= for the unit) and run again".into())),
            Some(libc::EFBIG) => ("the file is larger than the filesystem allows".into(), or_elsewhere("on another filesystem")),
            Some(libc::ENAMETOOLONG) => ("the path is too long".into(), or_elsewhere("with a shorter path")),
            Some(libc::ELOOP) => ("the path has a loop of symbolic links".into(), Some("check the path (namei -l)".into())),
            Some(libc::EIO) => ("the device reported an I/O error".into(), either("check the disk (dmesg)", "on another filesystem")),
            _ => return (None, elsewhere.map(|e| format!("{e} to use another place"))),
        };
        (Some(meaning), todo)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // io::Error reads "No space left on device (os error 28)": lower-cased inside a sentence.
        let err = self.err.to_string();
        let mut chars = err.chars();
        let err: String = chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default();
        write!(f, "{} {}: {err}", self.doing, self.path.display())?;
        let (meaning, todo) = self.advice();
        if let Some(meaning) = meaning {
            write!(f, ": {meaning}")?;
        }
        match self.kept.as_deref() {
            Some([]) => write!(f, "; kept: nothing")?,
            Some(kept) => write!(f, "; kept: {}", kept.join(", "))?,
            None => {}
        }
        if let Some(todo) = todo {
            write!(f, "; {todo}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileError {}

/// `fs::write(&path, text).on("writing", &path, RUN_DIR)?`: an io::Error on a path, as advice.
pub trait OnPath<T> {
    fn on(self, doing: &'static str, path: &std::path::Path, place: Place) -> Result<T, FileError>;
}

impl<T> OnPath<T> for std::io::Result<T> {
    fn on(self, doing: &'static str, path: &std::path::Path, place: Place) -> Result<T, FileError> {
        self.map_err(|e| FileError::new(doing, path, e, place))
    }
}

/// What a run directory holds besides `failed` (sorted; directories end in `/`), for a
/// FileError's "kept". The overlay's scratch dirs `work/` and `root/` are left out: `pilot run`
/// removes them either way.
pub fn kept_in(dir: &std::path::Path, failed: Option<&str>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut kept: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let skip = Some(name.as_str()) == failed || name == "work" || name == "root";
            (!skip).then(|| if e.file_type().is_ok_and(|t| t.is_dir()) { format!("{name}/") } else { name })
        })
        .collect();
    kept.sort();
    kept
}

#[cfg(test)]
mod tests {
    use std::{io, path::Path};

    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn a_full_run_directory_says_which_file_what_was_kept_and_what_to_do() {
        let e = FileError::new("writing", Path::new("/x/run/graph.json"), os(libc::ENOSPC), RUN_DIR)
            .kept(vec!["events.jsonl".into(), "summary.json".into()]);
        assert_eq!(
            e.to_string(),
            "writing /x/run/graph.json: no space left on device (os error 28): the run directory's filesystem is full; \
             kept: events.jsonl, summary.json; free space there or give --out DIR on another filesystem"
        );
    }

    #[test]
    fn each_errno_gets_its_own_advice() {
        let say = |errno, doing, place| FileError::new(doing, Path::new("/p"), os(errno), place).to_string();
        assert!(say(libc::EROFS, "opening the journal", JOURNAL).ends_with(
            "read-only file system (os error 30): the journal is on a read-only filesystem; set PILOT_JOURNAL=FILE on a writable filesystem"
        ));
        assert!(say(libc::EDQUOT, "writing", RUN_DIR).contains("quota"));
        assert!(say(libc::EACCES, "writing", REPORT).contains("may not write there"), "{}", say(libc::EACCES, "writing", REPORT));
        assert!(say(libc::EACCES, "writing", REPORT).ends_with("or give --html FILE somewhere writable"));
        assert!(say(libc::EACCES, "reading", INPUT).contains("may not read it"));
        assert!(say(libc::ENOENT, "creating", RUN_DIR).contains("a directory on the way to it does not exist; create it or give --out DIR"));
        assert!(say(libc::EISDIR, "writing", REPORT).ends_with("it is a directory; give --html FILE naming a file"));
        assert!(say(libc::EMFILE, "opening", RUN_DIR).contains("ulimit -n"));
        // An errno without its own advice still says how to go elsewhere.
        assert!(say(libc::EXDEV, "writing", RUN_DIR).ends_with("; give --out DIR to use another place"));
        // Nothing to say for an input: no dangling "; ".
        assert!(!say(libc::EXDEV, "reading", INPUT).ends_with("; "));
        assert_eq!(FileError::new("writing", Path::new("/p"), os(libc::ENOSPC), RUN_DIR).kept(vec![]).to_string().matches("kept: nothing").count(), 1);
    }

    #[test]
    fn a_file_error_exits_1_unless_it_is_bad_input() {
        let e = || FileError::new("writing", Path::new("/p"), os(libc::ENOSPC), RUN_DIR);
        assert_eq!(exit_code(&anyhow::Error::new(e())), EXIT_AGENT);
        assert_eq!(exit_code(&anyhow::Error::new(e().usage())), EXIT_USAGE);
        assert_eq!(exit_code(&anyhow::Error::new(e().usage()).context("outer")), EXIT_USAGE);
        assert_eq!(one_line(&anyhow::Error::new(e())), e().to_string(), "one line, no repeated cause");
    }

    #[test]
    fn kept_lists_the_run_directory_but_the_failed_file_and_the_overlay_scratch() {
        let d = tempfile::tempdir().unwrap();
        for f in ["summary.json", "events.jsonl", "graph.json"] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        for dir in ["upper", "work", "root"] {
            std::fs::create_dir(d.path().join(dir)).unwrap();
        }
        assert_eq!(kept_in(d.path(), Some("graph.json")), ["events.jsonl", "summary.json", "upper/"]);
        assert_eq!(kept_in(&d.path().join("missing"), None), Vec::<String>::new());
    }
}
