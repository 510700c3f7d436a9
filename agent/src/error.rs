//! Errors and exit codes (a contract: runbooks branch on them). Bad input (flags, pids,
//! cgroups, policies) is a `UsageError` and exits 2; a kernel that cannot contain a pilot is a
//! `KernelError` and exits 5; anything else is the agent failing and exits 1. The outcomes of
//! a pilot (pass, blocked, command failed) are exit statuses too, but not errors.
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
    } else if err.chain().any(|e| e.downcast_ref::<UsageError>().is_some()) {
        EXIT_USAGE
    } else {
        EXIT_AGENT
    }
}

/// One line: the error and its causes, outermost first.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
}
