//! Booting one kernel under qemu: TCG unless the host has a real KVM module (the paravirtual
//! /dev/kvm of some cloud machines fails on stock kernels), console on the first serial port,
//! the guest's report on the second, killed (by our child's pid) at the deadline.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::cmd::{command, display};

pub struct Boot {
    pub console: PathBuf,
    pub report: PathBuf,
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// `-accel kvm` only where the kvm_intel or kvm_amd module is loaded. TCG runs its vCPUs in
/// one host thread: with a thread per vCPU (MTTCG) a guest CPU went on executing a stale
/// translation of the int3 the kernel plants while it patches a tracepoint's static call, and
/// 6.12 died of "Oops: int3" in syscall_trace_enter as pilot attached its probes (6.1 locked
/// up once, likely the same). Attaching and detaching tracepoints is what pilot does most.
pub fn accel() -> &'static str {
    if Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists() { "kvm" } else { "tcg,thread=single" }
}

pub fn boot(vmlinuz: &Path, initrd: &Path, dir: &Path, memory_mib: u32, timeout: Duration) -> anyhow::Result<Boot> {
    let console = dir.join("console.log");
    let report = dir.join("report.log");
    let mut cmd = command("qemu-system-x86_64");
    cmd.args(["-accel", accel(), "-cpu", "max", "-smp", "2", "-m", &memory_mib.to_string()])
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // A soft lockup panics (and -no-reboot ends qemu) instead of stalling
        // until the deadline; loglevel 7 keeps the call traces on the console.
        .args(["-append", "console=ttyS0 panic=-1 loglevel=7 softlockup_panic=1"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", report.display()))
        .stdin(Stdio::null());
    println!("  $ {}", display(&cmd));
    let started = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Boot { console, report, elapsed: started.elapsed(), timed_out })
}
