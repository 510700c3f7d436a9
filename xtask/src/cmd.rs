//! Small helpers for running programs: every child gets a PATH that includes cargo's bin
//! directory (CI shells often lack ~/.cargo/bin), and every command we run for real is echoed
//! first so the log shows exactly what happened.
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{Context as _, bail};

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: $CARGO_TARGET_DIR if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// Where `cargo install` puts binaries: $CARGO_HOME/bin, default $HOME/.cargo/bin.
pub fn cargo_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cargo")
            .join("bin"),
    }
}

/// Our PATH with cargo's bin directory in front when it is not already on it.
pub fn child_path() -> OsString {
    let bin = cargo_bin_dir();
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    if !dirs.iter().any(|d| d == &bin) {
        dirs.insert(0, bin);
    }
    std::env::join_paths(dirs).unwrap_or(current)
}

/// Looks `program` up in [`child_path`].
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&child_path())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The cargo that runs us ($CARGO), falling back to `cargo` on PATH.
pub fn cargo() -> Command {
    command(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// A `Command` whose PATH includes cargo's bin directory.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", child_path());
    cmd
}

/// Echoes `cmd`, runs it with inherited stdio and returns its exit status (whatever it is).
pub fn status(cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    println!("  $ {}", display(cmd));
    cmd.status().with_context(|| {
        format!(
            "could not start `{}`: is it installed and on PATH?",
            program_name(cmd)
        )
    })
}

/// Echoes and runs `cmd`; a non-zero exit becomes an error that names the command.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status}); see its output above", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly (no echo) and returns its stdout when it exits 0, None otherwise
/// (including when the program is missing). For probes such as `bpf-linker --version`.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(std::process::Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn program_name(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

/// `cmd` as a shell-like line: explicitly set variables (not PATH), program, quoted arguments.
pub fn display(cmd: &Command) -> String {
    let envs = cmd
        .get_envs()
        .filter(|(k, v)| *k != "PATH" && v.is_some())
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), quote(v.unwrap_or_default())));
    let program = std::iter::once(quote(cmd.get_program()));
    let args = cmd.get_args().map(quote);
    envs.chain(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("bash");
        cmd.env("PATH", "/x").env("LLVM_PREFIX", "/usr/lib/llvm-22");
        cmd.args(["-c", "echo 'hi' > a", "--flag"]);
        assert_eq!(
            display(&cmd),
            r"LLVM_PREFIX=/usr/lib/llvm-22 bash -c 'echo '\''hi'\'' > a' --flag"
        );
    }

    #[test]
    fn child_path_includes_cargo_bin() {
        let bin = cargo_bin_dir();
        assert!(std::env::split_paths(&child_path()).any(|d| d == bin));
    }
}
