//! What a live process does with each signal, read when the snapshot is taken: caught (a
//! handler, or read through a signalfd), ignored, or blocked, from /proc/<pid>/status (SigCgt,
//! SigIgn, SigBlk) and the `sigmask:` of its signalfds. A SIGHUP the target catches is a
//! reload; the same SIGHUP to a process that does not catch it ends it. SIGTERM, SIGINT and
//! SIGQUIT ask a process to exit: a handler for them is how it shuts down cleanly (PostgreSQL,
//! nginx, every JVM catch SIGTERM), so catching one does not make it harmless.
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::procfs;

/// A process's signal dispositions: bit N-1 for signal N, as /proc prints them. Serialized as
/// /proc's 16 hex digits ("0000000000004a02"), so graph.json shows what the kernel said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signals {
    /// A handler is installed (SigCgt), or a signalfd of the process reads it.
    #[serde(with = "hex")]
    pub caught: u64,
    #[serde(with = "hex")]
    pub ignored: u64,
    /// Blocked by its main thread: pending until unblocked, then its disposition applies.
    #[serde(with = "hex")]
    pub blocked: u64,
}

/// What a signal does to a process, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The process catches it (its handler runs: a reload, a log reopen).
    Caught,
    /// The process catches it, but it is a request to exit (SIGTERM, SIGINT, SIGQUIT): its
    /// handler shuts it down, cleanly.
    CaughtExit,
    /// It ignores it.
    Ignored,
    /// Neither, and the default action is to ignore it (SIGCHLD, SIGCONT, SIGURG, SIGWINCH).
    DefaultIgnore,
    /// The default action: terminate, dump core or stop the process. SIGKILL and SIGSTOP are
    /// always this: they cannot be caught, ignored or blocked.
    Default,
}

impl Effect {
    /// The process handles it: nothing it did not ask for happens.
    pub fn handled(self) -> bool {
        !matches!(self, Effect::Default | Effect::CaughtExit)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Effect::Caught => "the target catches it (a handler or a signalfd)",
            Effect::CaughtExit => "the target catches it, but it asks the target to exit: its handler shuts it down",
            Effect::Ignored => "the target ignores it",
            Effect::DefaultIgnore => "the target does not catch it and its default action is to ignore it",
            Effect::Default => "the target does not catch it: its default action (terminate, core dump or stop) applies",
        }
    }
}

const SIGKILL: i64 = 9;
const SIGSTOP: i64 = 19;

impl Signals {
    /// The dispositions of `pid` now, with `signalfd` (the signals its signalfds read) as caught.
    pub fn read(pid: u32, signalfd: u64) -> Option<Signals> {
        let (caught, ignored, blocked) = procfs::signal_masks(pid)?;
        Some(Signals { caught: caught | signalfd, ignored, blocked })
    }

    /// What signal `sig` does to this process.
    pub fn effect(&self, sig: i64) -> Effect {
        if !(1..=64).contains(&sig) || sig == SIGKILL || sig == SIGSTOP {
            return Effect::Default;
        }
        let bit = 1u64 << (sig - 1);
        if self.caught & bit != 0 {
            if exit_request(sig) { Effect::CaughtExit } else { Effect::Caught }
        } else if self.ignored & bit != 0 {
            Effect::Ignored
        } else if default_ignore(sig) {
            Effect::DefaultIgnore
        } else {
            Effect::Default
        }
    }
}

/// Signals that ask a process to exit (a handler makes the exit clean, not optional).
fn exit_request(sig: i64) -> bool {
    matches!(sig, 2 | 3 | 15) // SIGINT, SIGQUIT, SIGTERM
}

/// Signals whose default action is to do nothing (signal(7)).
fn default_ignore(sig: i64) -> bool {
    matches!(sig, 17 | 18 | 23 | 28) // SIGCHLD, SIGCONT, SIGURG, SIGWINCH
}

/// A signal's number from the name events and edges carry (`SIGHUP`); None for names without
/// one number (`SIGRT`).
pub fn number(name: &str) -> Option<i64> {
    (1..32).find(|n| crate::event::signal_name(*n) == name)
}

mod hex {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(|_| serde::de::Error::custom(format!("`{s}` is not a hex signal mask")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_hup_is_handled_a_default_term_is_not_and_kill_never_is() {
        // Python with a SIGHUP handler, SIGINT and SIGQUIT ignored by its launching shell.
        let s = Signals { caught: 0x1, ignored: 0x1001006, blocked: 0 };
        assert_eq!(s.effect(number("SIGHUP").unwrap()), Effect::Caught);
        assert_eq!(s.effect(2), Effect::Ignored);
        assert_eq!(s.effect(15), Effect::Default);
        let jvm = Signals { caught: 1 << 14 | 1, ignored: 0, blocked: 0 };
        assert_eq!(jvm.effect(15), Effect::CaughtExit, "a caught SIGTERM still ends the process");
        assert!(!jvm.effect(15).handled());
        assert_eq!(s.effect(17), Effect::DefaultIgnore);
        let all = Signals { caught: u64::MAX, ignored: u64::MAX, blocked: u64::MAX };
        assert_eq!(all.effect(SIGKILL), Effect::Default);
        assert_eq!(all.effect(SIGSTOP), Effect::Default);
        assert!(!Signals { blocked: 1, ..Default::default() }.effect(1).handled(), "blocked is not caught");
        assert_eq!(number("SIGRT"), None);
    }

    #[test]
    fn masks_serialize_as_proc_prints_them() {
        let s = Signals { caught: 0x4a02, ignored: 0, blocked: 1 << 63 };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"{"caught":"0000000000004a02","ignored":"0000000000000000","blocked":"8000000000000000"}"#);
        assert_eq!(serde_json::from_str::<Signals>(&j).unwrap(), s);
    }
}
