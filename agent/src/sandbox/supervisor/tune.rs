//! Priority, affinity and limits of other processes. Inside the pilot a live process's pid
//! does not exist (ESRCH) and CAP_SYS_NICE is gone; live, `renice`, `taskset -p`, `chrt -p`,
//! `ionice -p` and `prlimit --pid` work. Queries about a live process are answered from it
//! (the agent asks the kernel the same question in the host's namespace: read-only); changes
//! are held back, recorded as `setpriority`, `setaffinity` or `setrlimit` effects on that
//! process, and the caller is told what live would say (0, ESRCH, or EPERM/EACCES where live
//! it would be refused); later queries of the same process see the held-back value (nice,
//! RLIMIT_*, affinity), as they would live. Calls about the pilot's own processes go to the
//! kernel.
use crate::event::Kind;
use super::{Call, Ctx, mem, notify::Answer, pids};

const PRIO_PROCESS: u64 = 0;
const PRIO_PGRP: u64 = 1;
const IOPRIO_WHO_PROCESS: u64 = 1;
const IOPRIO_WHO_PGRP: u64 = 2;

/// Whom a call names: the caller's own side (the kernel decides) or a live host target.
enum Whom {
    Own,
    /// A live process (host pid).
    Process(u32),
    /// A live process group (host pgid).
    Group(u32),
    /// Every process of a uid (host-wide live).
    User(u32),
    Missing,
}

pub fn handle(ctx: &mut Ctx, call: &Call) -> Answer {
    match call.name {
        "getpriority" | "ioprio_get" => query_who(ctx, call),
        "setpriority" | "ioprio_set" => change_who(ctx, call),
        "sched_getaffinity" | "sched_getscheduler" | "sched_getparam" | "sched_getattr" => query_pid(ctx, call),
        "sched_setaffinity" | "sched_setscheduler" | "sched_setparam" | "sched_setattr" => change_pid(ctx, call),
        "prlimit64" => prlimit(ctx, call),
        _ => Answer::Continue,
    }
}

/// The (which, who) of getpriority/setpriority/ioprio_*.
fn whom(ctx: &mut Ctx, call: &Call) -> Whom {
    let (which, who) = (call.args[0], call.int(1));
    let (process, group) = if call.name.starts_with("ioprio") { (IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP) } else { (PRIO_PROCESS, PRIO_PGRP) };
    let pilot = ctx.pilot();
    if which == process {
        if who == 0 || pilot.has_process(who) || pilot.has_thread(who) {
            return Whom::Own;
        }
        return match pids::host_process(who as u32) {
            Some(p) => Whom::Process(p.tgid),
            None => Whom::Missing,
        };
    }
    if which == group {
        if who == 0 || pilot.pgids.contains(&who) {
            return Whom::Own;
        }
        return if pids::group_members(who as u32).is_empty() { Whom::Missing } else { Whom::Group(who as u32) };
    }
    Whom::User(who as u32)
}

/// getpriority/ioprio_get of a live target: the kernel's answer in the host's namespace.
fn query_who(ctx: &mut Ctx, call: &Call) -> Answer {
    match whom(ctx, call) {
        Whom::Own => Answer::Continue,
        Whom::Missing => Answer::Errno(libc::ESRCH),
        Whom::Process(pid) if call.name == "getpriority" => match ctx.tuned.get(&(pid, "nice", 0)) {
            Some(nice) => Answer::Value(20 - i32::from_ne_bytes(nice[..4].try_into().expect("4 bytes")) as i64),
            None => raw(call, [call.args[0], call.args[1], 0, 0, 0, 0]),
        },
        _ => raw(call, [call.args[0], call.args[1], 0, 0, 0, 0]),
    }
}

/// setpriority/ioprio_set of a live target: held back.
fn change_who(ctx: &mut Ctx, call: &Call) -> Answer {
    let target = whom(ctx, call);
    let Some(sender) = pids::host_process(call.tid) else { return Answer::Continue };
    let value = if call.name == "setpriority" {
        format!("nice {}", call.int(2))
    } else {
        let prio = call.args[2];
        format!("ioprio class {} level {}", prio >> 13, prio & 0x1fff)
    };
    let (target_pid, label, answer) = match target {
        Whom::Own => return Answer::Continue,
        Whom::Missing => return Answer::Errno(libc::ESRCH),
        Whom::Process(pid) => {
            let Some(t) = pids::host_process(pid) else { return Answer::Errno(libc::ESRCH) };
            let answer = permitted(&sender, &t, call);
            if call.name == "setpriority" && matches!(answer, Answer::Value(0)) {
                remember(ctx, (pid, "nice", 0), (call.int(2).clamp(-20, 19) as i32).to_ne_bytes().to_vec());
            }
            (Some(pid as i64), None, answer)
        }
        Whom::Group(pgid) => (Some(-(pgid as i64)), None, if sender.uids[1] == 0 { Answer::Value(0) } else { Answer::Errno(libc::EPERM) }),
        Whom::User(uid) => (None, Some(format!("uid {uid}")), if sender.uids[1] == 0 || sender.uids[1] == uid { Answer::Value(0) } else { Answer::Errno(libc::EPERM) }),
    };
    record(ctx, call, &sender, Kind::Setpriority, (target_pid, label), value, &answer);
    answer
}

/// sched_get*(pid, ...) of a live process: asked of the kernel here, the result copied into
/// the caller's buffer.
fn query_pid(ctx: &mut Ctx, call: &Call) -> Answer {
    let pid = match own_or_live(ctx, call.int(0)) {
        Ok(Some(pid)) => pid,
        Ok(None) => return Answer::Continue,
        Err(a) => return a,
    };
    let (len, buf_arg) = match call.name {
        "sched_getaffinity" => ((call.args[1] as usize).min(8192), 2),
        "sched_getparam" => (4, 1),
        "sched_getattr" => ((call.args[2] as usize).min(256), 1),
        _ => return raw(call, [pid as u64, 0, 0, 0, 0, 0]), // sched_getscheduler: a value
    };
    let mut buf = vec![0u8; len];
    let mut args = call.args;
    args[0] = pid as u64;
    args[buf_arg] = buf.as_mut_ptr() as u64;
    let answer = raw(call, args);
    if let (Answer::Value(_), Some(mask), "sched_getaffinity") = (&answer, ctx.tuned.get(&(pid, "affinity", 0)), call.name) {
        buf.iter_mut().for_each(|b| *b = 0);
        let n = mask.len().min(len);
        buf[..n].copy_from_slice(&mask[..n]);
    }
    if let Answer::Value(n) = answer {
        let copy = if call.name == "sched_getaffinity" { (n as usize).min(len) } else { len };
        let Some(mem) = ctx.mem(call) else { return Answer::Errno(libc::EFAULT) };
        if mem.write(call.args[buf_arg], &buf[..copy]).is_err() {
            return Answer::Errno(libc::EFAULT);
        }
    }
    answer
}

/// sched_set*(pid, ...) of a live process: held back.
fn change_pid(ctx: &mut Ctx, call: &Call) -> Answer {
    let pid = match own_or_live(ctx, call.int(0)) {
        Ok(Some(pid)) => pid,
        Ok(None) => return Answer::Continue,
        Err(a) => return a,
    };
    let (Some(sender), Some(target)) = (pids::host_process(call.tid), pids::host_process(pid)) else { return Answer::Errno(libc::ESRCH) };
    let mem = ctx.mem(call);
    let (kind, value) = match call.name {
        "sched_setaffinity" => {
            let mask = mem.and_then(|m| m.read(call.args[2], (call.args[1] as usize).min(8192)).ok()).unwrap_or_default();
            (Kind::Setaffinity, format!("cpus {}", cpu_list(&mask)))
        }
        "sched_setscheduler" => {
            let prio = mem.and_then(|m| m.u32_at(call.args[2]).ok()).unwrap_or(0);
            (Kind::Setpriority, format!("policy {} priority {prio}", policy_name(call.args[1])))
        }
        "sched_setparam" => (Kind::Setpriority, format!("priority {}", mem.and_then(|m| m.u32_at(call.args[1]).ok()).unwrap_or(0))),
        _ => {
            // struct sched_attr: size, policy, flags, nice, priority...
            let a = mem.and_then(|m| m.read(call.args[1], 48).ok()).unwrap_or_default();
            (Kind::Setpriority, format!("policy {} nice {} priority {}", policy_name(mem::u32_at(&a, 4) as u64), mem::u32_at(&a, 16) as i32, mem::u32_at(&a, 20)))
        }
    };
    let answer = permitted(&sender, &target, call);
    if kind == Kind::Setaffinity && matches!(answer, Answer::Value(0)) {
        let mask = ctx.mem(call).and_then(|m| m.read(call.args[2], (call.args[1] as usize).min(8192)).ok()).unwrap_or_default();
        remember(ctx, (pid, "affinity", 0), mask);
    }
    record(ctx, call, &sender, kind, (Some(pid as i64), None), value, &answer);
    answer
}

/// prlimit64(pid, resource, new, old) of a live process: the old limits from it, a new one
/// held back.
fn prlimit(ctx: &mut Ctx, call: &Call) -> Answer {
    let pid = match own_or_live(ctx, call.int(0)) {
        Ok(Some(pid)) => pid,
        Ok(None) => return Answer::Continue,
        Err(a) => return a,
    };
    let (Some(sender), Some(target)) = (pids::host_process(call.tid), pids::host_process(pid)) else { return Answer::Errno(libc::ESRCH) };
    let resource = call.args[1];
    let Some(mem) = ctx.mem(call) else { return Answer::Continue };
    let mut answer = Answer::Value(0);
    let mut held_limit = None;
    if call.args[2] != 0 {
        let Ok(new) = mem.read(call.args[2], 16) else { return Answer::Errno(libc::EFAULT) };
        let limit = |v: u64| if v == u64::MAX { "unlimited".to_string() } else { v.to_string() };
        let value = format!("{} soft {} hard {}", rlimit_name(resource), limit(mem::u64_at(&new, 0)), limit(mem::u64_at(&new, 8)));
        answer = permitted(&sender, &target, call);
        if matches!(answer, Answer::Value(0)) && new.len() == 16 {
            held_limit = Some(new.clone());
        }
        record(ctx, call, &sender, Kind::Setrlimit, (Some(pid as i64), None), value, &answer);
    }
    if call.args[3] != 0 && matches!(answer, Answer::Value(0)) {
        let mut old = [0u8; 16];
        match ctx.tuned.get(&(pid, "rlimit", resource)) {
            Some(held) => old.copy_from_slice(&held[..16]),
            None => {
                if let Answer::Errno(e) = raw(call, [pid as u64, resource, 0, old.as_mut_ptr() as u64, 0, 0]) {
                    return Answer::Errno(e);
                }
            }
        }
        if mem.write(call.args[3], &old).is_err() {
            return Answer::Errno(libc::EFAULT);
        }
    }
    // After the old limits were read: prlimit(new, old) returns the limits before the change.
    if let Some(new) = held_limit {
        remember(ctx, (pid, "rlimit", resource), new);
    }
    answer
}

/// Ok(None): the caller's own process (0, or a pid of the pilot); Ok(Some(host pid)): a
/// live process; Err: no such process.
fn own_or_live(ctx: &mut Ctx, pid: i64) -> Result<Option<u32>, Answer> {
    let pilot = ctx.pilot();
    if pid == 0 || pilot.has_process(pid) || pilot.has_thread(pid) {
        return Ok(None);
    }
    match pids::host_process(pid as u32) {
        Some(p) if pilot.host.contains(&p.tgid) => Ok(None),
        Some(_) if pid > 0 => Ok(Some(pid as u32)),
        _ => Err(Answer::Errno(libc::ESRCH)),
    }
}

/// What live would answer a change by `sender` to `target`: root may; others may only
/// change processes of their own uid, and only lower their priority (a higher one needs
/// CAP_SYS_NICE: EACCES for setpriority, EPERM otherwise).
fn permitted(sender: &pids::HostProcess, target: &pids::HostProcess, call: &Call) -> Answer {
    if sender.uids[1] == 0 {
        return Answer::Value(0);
    }
    if !pids::may_tune(sender, target) {
        return Answer::Errno(libc::EPERM);
    }
    if call.name == "setpriority" {
        let current = rustix::process::Pid::from_raw(target.tgid as i32).and_then(|p| rustix::process::getpriority_process(Some(p)).ok());
        if current.is_some_and(|c| (call.int(2) as i32) < c) {
            return Answer::Errno(libc::EACCES);
        }
    }
    Answer::Value(0)
}

#[allow(clippy::too_many_arguments)]
/// Most held-back values kept for later queries (then the oldest are forgotten: queries see
/// the live values again).
const MAX_TUNED: usize = 4096;

fn remember(ctx: &mut Ctx, key: (u32, &'static str, u64), value: Vec<u8>) {
    if ctx.tuned.len() >= MAX_TUNED {
        ctx.tuned.clear();
    }
    ctx.tuned.insert(key, value);
}

fn record(ctx: &mut Ctx, call: &Call, sender: &pids::HostProcess, kind: Kind, (target_pid, target): (Option<i64>, Option<String>), value: String, answer: &Answer) {
    super::record(ctx, call, sender, kind, super::What { target_pid, target, value: Some(value), path: None }, answer);
}

/// The same syscall with `args`, made by the agent (a query in the host's namespace).
fn raw(call: &Call, args: [u64; 6]) -> Answer {
    let Ok(nr) = libseccomp::ScmpSyscall::from_name(call.name) else { return Answer::Continue };
    // SAFETY: a read-only query (get*), its buffers ours and sized by the caller above.
    let r = unsafe { libc::syscall(nr.as_raw_syscall() as libc::c_long, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if r < 0 { Answer::Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)) } else { Answer::Value(r) }
}

/// `0-3,8` from a CPU mask.
pub fn cpu_list(mask: &[u8]) -> String {
    let cpus: Vec<usize> = (0..mask.len() * 8).filter(|i| mask[i / 8] & (1 << (i % 8)) != 0).collect();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    if parts.is_empty() { "none".into() } else { parts.join(",") }
}

fn policy_name(p: u64) -> &'static str {
    match p & 0xff {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "SCHED_?",
    }
}

fn rlimit_name(r: u64) -> &'static str {
    const NAMES: [&str; 16] = [
        "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
        "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
    ];
    NAMES.get(r as usize).copied().unwrap_or("RLIMIT_?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(cpu_list(&[0b0000_1111, 0b0000_0001]), "0-3,8");
        assert_eq!(cpu_list(&[0b0000_0010]), "1");
        assert_eq!(cpu_list(&[0]), "none");
    }
}
