//! Conventions users expect of a CLI: `pilot --version` names the commit it was built from,
//! `pilot generate` writes man pages and shell completions made from the clap definitions, and
//! a file pilot cannot write (a full run directory, a journal on a read-only filesystem) ends
//! with one `pilot:` line saying which file, what was kept and what to do. The filesystems are
//! tmpfs mounts the test makes in a private mount namespace (`unshare -m`): they vanish with it.
mod common;

use std::{
    fs,
    path::Path,
    process::{Command, Output},
};

use common::*;

fn pilot(args: &[&str]) -> Output {
    Command::new(pilot_bin()).args(args).env("PILOT_NO_DAEMON", "1").output().expect("running pilot")
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn git(args: &[&str]) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("git").arg("-C").arg(&root).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let o = pilot(&["--version"]);
    assert!(o.status.success(), "{}", text(&o));
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let package = concat!("pilot ", env!("CARGO_PKG_VERSION"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let checkout = git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| Path::new(&top).canonicalize().ok() == Some(root.clone()));
    if !checkout {
        assert_eq!(line, package, "outside a git checkout: the package version alone");
        return;
    }
    // pilot 0.1.0 (git 34efba1, 2026-12-01), or 34efba1-dirty
    let rest = line.strip_prefix(package).and_then(|r| r.strip_prefix(" (git ")).and_then(|r| r.strip_suffix(')'));
    let (commit, date) = rest.and_then(|r| r.split_once(", ")).unwrap_or_else(|| panic!("{line:?} is not `{package} (git HASH, DATE)`"));
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{line:?}: a short hash");
    let head = git(&["rev-parse", "HEAD"]).unwrap();
    assert!(head.starts_with(hash), "{line:?} names HEAD ({head})");
    assert_eq!(Some(date.to_string()), git(&["show", "-s", "--format=%cs", "HEAD"]), "{line:?}: the commit's date");
}

#[test]
fn generate_man_writes_a_page_per_command_that_man_renders() {
    let d = Scratch::new();
    let o = pilot(&["generate", "man", "--dir", &d.join("man")]);
    assert!(o.status.success(), "{}", text(&o));
    let mut pages: Vec<String> = fs::read_dir(d.path().join("man")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    // Every visible command of `pilot --help` has its page.
    let help = String::from_utf8_lossy(&pilot(&["--help"]).stdout).into_owned();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 14, "{commands:?}");
    for c in commands {
        assert!(pages.contains(&format!("pilot-{c}.1")), "pilot-{c}.1 in {pages:?}");
    }
    assert!(pages.contains(&"pilot.1".to_string()) && pages.contains(&"pilot-journal-verify.1".to_string()), "{pages:?}");
    assert!(!pages.iter().any(|p| p.contains("__")), "no page for internal commands: {pages:?}");
    for page in &pages {
        let out = Command::new("man").args(["--warnings", "-l"]).arg(d.path().join("man").join(page)).env("MANWIDTH", "100").env("LC_ALL", "C").output().expect("man (apt-get install man-db)");
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && warnings.trim().is_empty(), "{page}: {warnings}");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("NAME") && shown.contains("SYNOPSIS"), "{page}:\n{shown}");
    }
    let run = Command::new("man").args(["-l"]).arg(d.path().join("man/pilot-run.1")).env("MANWIDTH", "100").env("LC_ALL", "C").output().unwrap();
    let run = String::from_utf8_lossy(&run.stdout);
    // The examples keep their columns (not filled into prose) and the exit statuses are there.
    assert!(run.contains("  pilot diff /tmp/r1                  what it would have changed"), "{run}");
    assert!(run.contains("--timeout <DURATION>") && run.contains("3 blocked by policy"), "{run}");
    // Without --dir: pilot(1) on stdout.
    let o = pilot(&["generate", "man"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(".TH pilot 1"), "{}", text(&o));
}

#[test]
fn generated_completions_load_and_offer_every_command() {
    let d = Scratch::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = pilot(&["generate", shell, "--dir", &d.s()]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let bash = d.join("pilot.bash");
    let o = Command::new("bash").args(["-c", &format!("source {bash} && complete -p pilot")]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("-F _pilot"), "bash registers the completion: {}", text(&o));
    // What bash offers after `pilot ` and after `pilot run --`.
    let offer = |words: &str| {
        let script = format!("source {bash}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _pilot pilot; echo \"${{COMPREPLY[@]}}\"");
        String::from_utf8_lossy(&Command::new("bash").args(["-c", &script]).output().unwrap().stdout).into_owned()
    };
    let top = offer("pilot ''");
    for c in ["run", "trace", "commit", "generate", "journal"] {
        assert!(top.split_whitespace().any(|w| w == c), "{c} offered after `pilot `: {top}");
    }
    assert!(!top.contains("__sandbox"), "internal commands are not offered: {top}");
    let run = offer("pilot run --");
    assert!(run.contains("--timeout") && run.contains("--ringbuf-kib"), "{run}");
    if Command::new("zsh").arg("--version").output().is_ok() {
        let o = Command::new("zsh").args(["-n"]).arg(d.join("_pilot")).output().unwrap();
        assert!(o.status.success(), "zsh parses _pilot: {}", text(&o));
    }
    assert!(fs::read_to_string(d.join("pilot.fish")).unwrap().contains("complete -c pilot"), "fish's file");
}

#[test]
fn generate_into_a_place_that_cannot_be_written_is_bad_input_with_advice() {
    let d = Scratch::new();
    let file = d.file("file", "");
    let o = pilot(&["generate", "man", "--dir", &format!("{file}/man")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("pilot: creating {file}/man: ")) && stderr.trim_end().ends_with("a part of the path is a file, not a directory; give --dir DIR naming a directory"), "{stderr}");
}

/// Run `script` under `/bin/sh -e` in a private mount namespace, as `sh -c script sh ARGS`,
/// with $PILOT set; its exit status.
fn in_private_mounts(script: &str, args: &[&str], env: &[(&str, &str)]) -> i32 {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "/bin/sh", "-ec", script, "sh"]).args(args).env("PILOT", pilot_bin()).env("PILOT_NO_DAEMON", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn(&mut cmd);
    p.wait_timeout(RUN_TIMEOUT).expect("the script finished in time")
}

/// `pilot trace --out MNT/run -- /bin/true` with MNT a 1 MiB tmpfs filled to its last `free`
/// pages: what it printed, its status, what it left in MNT/run.
fn trace_on_a_full_tmpfs(free: u32) -> (String, String, Vec<String>, String) {
    let d = Scratch::new();
    let mnt = d.mkdir("mnt");
    let script = r#"
        mnt=$1 res=$2 pages=$3
        mount -t tmpfs -o size=1m,mode=755 pilot-test-full "$mnt"
        head -c 2M /dev/zero > "$mnt/fill" 2>/dev/null || true    # up to the last page
        truncate -s -$((pages * $(getconf PAGESIZE))) "$mnt/fill"  # give back exactly $pages
        stat -f -c %a "$mnt" > "$res/free"
        set +e
        "$PILOT" trace --out "$mnt/run" -- /bin/true > "$res/stdout" 2> "$res/stderr"
        echo $? > "$res/status"
        ls -A "$mnt/run" > "$res/left"
    "#;
    let code = in_private_mounts(script, &[&mnt, &d.s(), &free.to_string()], &[]);
    assert_eq!(code, 0, "the setup script failed");
    let read = |f: &str| fs::read_to_string(d.path().join(f)).unwrap();
    assert_eq!(read("free").trim(), free.to_string(), "the tmpfs has exactly {free} free pages");
    assert!(fs::read_dir(&mnt).unwrap().next().is_none(), "the tmpfs is gone with its namespace");
    (read("status").trim().to_string(), read("stderr"), read("left").lines().map(str::to_string).collect(), mnt)
}

#[test]
fn a_full_run_directory_says_which_file_what_was_kept_and_what_to_do() {
    // Room for events.jsonl and summary.json (one page each), none for graph.json.
    let (status, stderr, left, mnt) = trace_on_a_full_tmpfs(2);
    assert_eq!(status, "1", "pilot failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "pilot: writing {mnt}/run/graph.json: no space left on device (os error 28): the run directory's filesystem is full; \
             kept: events.jsonl, summary.json; free space there or give --out DIR on another filesystem"
        ),
        "one line: the file, what was kept, what to do"
    );
    assert_eq!(left, ["events.jsonl", "summary.json"], "kept as said, no half-written graph.json");

    // No room at all: events.jsonl is cut short, and says so.
    let (status, stderr, left, mnt) = trace_on_a_full_tmpfs(0);
    assert_eq!(status, "1", "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "pilot: writing {mnt}/run/events.jsonl: no space left on device (os error 28): the run directory's filesystem is full; \
             kept: events.jsonl (cut short at 0 bytes); free space there or give --out DIR on another filesystem"
        )
    );
    assert_eq!(left, ["events.jsonl"]);

    // The control: with room, the same trace writes its four files and exits 0.
    let (status, stderr, left, _) = trace_on_a_full_tmpfs(200);
    assert_eq!(status, "0", "{stderr}");
    assert_eq!(left, ["events.jsonl", "graph.dot", "graph.json", "summary.json"], "{stderr}");
}

#[test]
fn a_journal_on_a_read_only_filesystem_gives_advice() {
    let d = Scratch::new();
    let mnt = d.mkdir("ro");
    let journal = format!("{mnt}/journal.jsonl");
    let script = r#"
        mnt=$1 res=$2
        mount -t tmpfs -o ro,size=64k pilot-test-ro "$mnt"
        set +e
        "$PILOT" run --out "$res/run" -- /bin/true > "$res/stdout" 2> "$res/stderr"
        echo $? > "$res/status"
        ls -A "$mnt" > "$res/left"
    "#;
    let code = in_private_mounts(script, &[&mnt, &d.s()], &[("PILOT_JOURNAL", &journal)]);
    assert_eq!(code, 0, "the setup script failed");
    let read = |f: &str| fs::read_to_string(d.path().join(f)).unwrap();
    let stderr = read("stderr");
    assert_eq!(read("status").trim(), "1", "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("pilot: "), "{stderr}");
    assert!(
        last.ends_with(&format!(
            "opening the journal {journal}: read-only file system (os error 30): the journal is on a read-only filesystem; \
             set PILOT_JOURNAL=FILE on a writable filesystem"
        )),
        "which file, why, what to do: {stderr}"
    );
    assert_eq!(stderr.lines().filter(|l| l.starts_with("pilot: ")).count(), 2, "the run directory, then the error: {stderr}");
    assert_eq!(read("left"), "", "nothing written there");
    assert!(d.path().join("run/intent.json").is_file(), "the intent was recorded before the journal failed");
}

#[test]
fn a_closed_stdout_ends_a_printing_command_quietly() {
    // `pilot generate bash | head -c 0`: the reader is gone before pilot writes.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(pilot_bin()).args(["generate", "bash"]).stdout(writer).output().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "ended by SIGPIPE, as `cat` would: {}", text(&o));
    assert!(o.stderr.is_empty(), "no panic, no message: {}", text(&o));
}
