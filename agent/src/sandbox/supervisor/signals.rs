//! Signals and liveness probes. Inside the pilot's PID namespace a live host process does not
//! exist (ESRCH) although `ps` shows it; live it does. For a target that is the pilot's own
//! process the kernel decides (continue). For a live process: a probe (signal 0, pidfd_open)
//! answers as live; a real signal is held back (never delivered: the PID namespace guarantees
//! that) and recorded as a `signal` effect on that process, and the sender is told 0, or
//! EPERM where live it would be refused.
use crate::event::Kind;
use super::{Call, Ctx, Notice, event, notify::Answer, pids, set_result};

pub fn handle(ctx: &mut Ctx, call: &Call) -> Answer {
    match call.name {
        "kill" | "rt_sigqueueinfo" => kill(ctx, call, call.int(0), call.int(1)),
        "tgkill" | "rt_tgsigqueueinfo" => thread_kill(ctx, call, Some(call.int(0)), call.int(1), call.int(2)),
        "tkill" => thread_kill(ctx, call, None, call.int(0), call.int(1)),
        "pidfd_send_signal" => pidfd_send_signal(ctx, call),
        "pidfd_open" => pidfd_open(ctx, call),
        _ => Answer::Continue,
    }
}

/// kill(target, sig): a process (> 0) or a process group (< -1); 0 and -1 are the caller's
/// own group and "everyone": the kernel decides (inside the namespace, that is the pilot).
fn kill(ctx: &mut Ctx, call: &Call, target: i64, sig: i64) -> Answer {
    if !(0..=64).contains(&sig) || target == 0 || target == -1 {
        return Answer::Continue;
    }
    let pilot = ctx.pilot();
    if target > 0 {
        if pilot.has_process(target) {
            if let Some(host) = pilot.tgids.get(&target) {
                ctx.notice(Notice::NsPid { ts_ns: call.ts_ns, ns: target, host: *host });
            }
            return Answer::Continue;
        }
        return live_process(ctx, call, &pilot, target as u32, sig);
    }
    let group = -target;
    if pilot.pgids.contains(&group) {
        return Answer::Continue;
    }
    live_group(ctx, call, group as u32, sig)
}

/// tgkill(tgid, tid, sig) / tkill(tid, sig).
fn thread_kill(ctx: &mut Ctx, call: &Call, tgid: Option<i64>, tid: i64, sig: i64) -> Answer {
    if !(0..=64).contains(&sig) || tid <= 0 || tgid.is_some_and(|g| g <= 0) {
        return Answer::Continue;
    }
    let pilot = ctx.pilot();
    let ours = match tgid {
        Some(g) => pilot.has_process(g),
        None => pilot.has_thread(tid),
    };
    if ours {
        return Answer::Continue;
    }
    let exists = match tgid {
        Some(g) => std::path::Path::new(&format!("/proc/{g}/task/{tid}")).exists(),
        None => std::path::Path::new(&format!("/proc/{tid}")).exists(),
    };
    if !exists {
        return Answer::Errno(libc::ESRCH);
    }
    // The process the thread belongs to is what the effect graph names.
    let Some(target) = pids::host_process(tid as u32) else { return Answer::Errno(libc::ESRCH) };
    live_process(ctx, call, &pilot, target.tgid, sig)
}

/// A signal (or probe) to live host process `pid`.
fn live_process(ctx: &mut Ctx, call: &Call, pilot: &pids::Pilot, pid: u32, sig: i64) -> Answer {
    let Some(sender) = pids::host_process(call.tid) else { return Answer::Continue };
    let Some(target) = pids::host_process(pid) else { return Answer::Errno(libc::ESRCH) };
    if pilot.host.contains(&target.tgid) {
        // The pilot's own process named by its host pid (read from /proc/self, say): the
        // namespace does not know that number; deliver it ourselves, as live.
        let r = rustix::process::Pid::from_raw(pid as i32)
            .ok_or(rustix::io::Errno::SRCH)
            .and_then(|p| if sig == 0 { rustix::process::test_kill_process(p) } else { raw_kill(p, sig) });
        return match r {
            Ok(()) => Answer::Value(0),
            Err(e) => Answer::Errno(e.raw_os_error()),
        };
    }
    let answer = if pids::may_signal(&sender, &target) { Answer::Value(0) } else { Answer::Errno(libc::EPERM) };
    record(ctx, call, &sender, pid as i64, sig, &answer);
    answer
}

/// A signal to live host process group `pgid`: held back for every member.
fn live_group(ctx: &mut Ctx, call: &Call, pgid: u32, sig: i64) -> Answer {
    let Some(sender) = pids::host_process(call.tid) else { return Answer::Continue };
    let members: Vec<pids::HostProcess> = pids::group_members(pgid).into_iter().filter_map(pids::host_process).collect();
    let answer = if members.is_empty() {
        Answer::Errno(libc::ESRCH)
    } else if members.iter().any(|m| pids::may_signal(&sender, m)) {
        Answer::Value(0)
    } else {
        Answer::Errno(libc::EPERM)
    };
    if !members.is_empty() {
        record(ctx, call, &sender, -(pgid as i64), sig, &answer);
    }
    answer
}

/// A `signal` event: held back when it would have been delivered, answered otherwise (a
/// probe, or one live would refuse: no effect).
fn record(ctx: &mut Ctx, call: &Call, sender: &pids::HostProcess, target: i64, sig: i64, answer: &super::notify::Answer) {
    let delivered = sig != 0 && matches!(answer, Answer::Value(0));
    let mut e = event(call, sender, Kind::Signal, if delivered { "held back" } else { "answered" });
    e.target_pid = Some(target);
    e.signal = Some(sig);
    e.signal_name = Some(crate::event::signal_name(sig));
    set_result(&mut e, answer);
    ctx.event(e);
}

/// pidfd_send_signal(fd, sig, info, flags): the fd is a pidfd or a /proc/<pid> directory.
fn pidfd_send_signal(ctx: &mut Ctx, call: &Call) -> Answer {
    let sig = call.int(1);
    if !(0..=64).contains(&sig) {
        return Answer::Continue;
    }
    let Some(fd) = ctx.caller_fd(call, call.int(0)) else { return Answer::Continue };
    let Some(pid) = pid_of_fd(&fd) else { return Answer::Continue };
    let pilot = ctx.pilot();
    if pilot.host.contains(&pid) {
        return Answer::Continue;
    }
    live_process(ctx, call, &pilot, pid, sig)
}

/// The host pid a pidfd (fdinfo `Pid:`, in our namespace: the host's) or a /proc/<pid>
/// directory fd names.
fn pid_of_fd(fd: &std::os::fd::OwnedFd) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let n = fd.as_raw_fd();
    if let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}"))
        && let Some(pid) = info.lines().find_map(|l| l.strip_prefix("Pid:"))
    {
        return pid.trim().parse::<i64>().ok().filter(|p| *p > 0).map(|p| p as u32);
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{n}")).ok()?;
    let rest = link.to_str()?.strip_prefix("/proc/")?;
    rest.trim_end_matches('/').parse().ok()
}

/// pidfd_open(pid, flags) of a live process: a pidfd made here and installed in the caller.
/// Safe to hand over: signalling through it stays refused by the kernel (its process is not
/// in the caller's namespace: EINVAL, and pidfd_send_signal comes here anyway), pidfd_getfd
/// needs ptrace rights over it the pilot does not have, setns is refused by the filter.
fn pidfd_open(ctx: &mut Ctx, call: &Call) -> Answer {
    let (pid, flags) = (call.int(0), call.args[1] as u32);
    if pid <= 0 || ctx.pilot().has_process(pid) {
        return Answer::Continue;
    }
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else { return Answer::Continue };
    let flags = rustix::process::PidfdFlags::from_bits_retain(flags);
    match rustix::process::pidfd_open(p, flags) {
        // pidfd_open's fds are always close-on-exec.
        Ok(fd) => Answer::Fd { fd, cloexec: true },
        Err(e) => Answer::Errno(e.raw_os_error()),
    }
}

/// kill(2) with any signal number (rustix's Signal covers only the standard ones).
fn raw_kill(pid: rustix::process::Pid, sig: i64) -> rustix::io::Result<()> {
    // SAFETY: a plain syscall with integer arguments.
    if unsafe { libc::kill(pid.as_raw_nonzero().get(), sig as i32) } == 0 {
        Ok(())
    } else {
        Err(rustix::io::Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(rustix::io::Errno::INVAL))
    }
}
