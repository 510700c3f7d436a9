//! The guest's /init (busybox sh) and the report it writes to the second serial port
//! (/dev/ttyS1), the only verdict the host trusts: qemu exits 0 on a guest panic too.
//!
//! Report lines: `BOOTED <release>`, `REFUSED <exit status> <message>` (pilot run before
//! overlayfs is loaded), `DOCTOR-BEGIN` / the JSON of `pilot doctor --json` / `DOCTOR-END <exit>`,
//! `RESULT <test binary> <libtest line>`, `SKIPPED <test binary> <test>: <why>` (a test that
//! skipped itself), `EXIT <test binary> <status>`, `DONE`; and
//! `INSMOD-FAILED <module>` or `DISK-FAILED` when the guest's setup went wrong.
use std::fmt::Write as _;

/// One integration-test binary to run with its libtest arguments.
pub struct TestRun {
    pub name: String,
    pub exe: String,
    pub args: Vec<String>,
}

/// Stage 1 moves everything onto a tmpfs and switch_roots into it: pivot_root, which every
/// pilot sandbox does, fails on the initramfs's own rootfs.
const STAGE1: &str = r#"#!/bin/busybox sh
if [ ! -e /.stage2 ]; then
  /bin/busybox mount -t tmpfs -o size=90% tmpfs /newroot
  for d in /*; do [ "$d" = /newroot ] || /bin/busybox cp -a "$d" /newroot/; done
  /bin/busybox touch /newroot/.stage2
  exec /bin/busybox switch_root /newroot /init
fi
"#;

const MOUNTS: &str = r#"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t tmpfs cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
ip link set lo up
hostname vmtest
R=/dev/ttyS1
say() { echo "$*" > $R; }
say "BOOTED $(uname -r)"
cd /tmp
"#;

/// `budget`: how long the tests may take in all; a binary still running then is killed, so
/// the guest still reports what it has and powers off before the host's deadline.
pub fn init(pilot: &str, tests: &[TestRun], env: &[(String, String)], budget: std::time::Duration) -> String {
    let mut s = String::from(STAGE1);
    s += MOUNTS;
    let _ = writeln!(s, "end=$(($(date +%s) + {}))", budget.as_secs());
    for (k, v) in env {
        let _ = writeln!(s, "export {k}='{v}'");
    }
    // Containment missing (overlayfs not loaded yet): pilot run must refuse, exit 5.
    let _ = writeln!(s, "msg=$({pilot} run -- /bin/true 2>&1); say \"REFUSED $? $msg\"");
    s += "for m in $(cat /vmtest/modules); do insmod $m || say \"INSMOD-FAILED $m\"; done\n";
    // /var and /tmp (where the tests' run directories, hence the overlays' upper layers, go)
    // on ext4, as on a real host: tmpfs, the guest's root, has user.* xattrs only since 6.6.
    s += "truncate -s 1G /disk.img && mkfs.ext4 -q -F /disk.img && mkdir /disk && mount -o loop /disk.img /disk \\\n";
    s += "  && mkdir -p /disk/var/lib /disk/var/tmp /disk/tmp && chmod 1777 /disk/tmp /disk/var/tmp \\\n";
    s += "  && mount -o bind /disk/var /var && mount -o bind /disk/tmp /tmp || say DISK-FAILED\n";
    s += "cd /tmp\n";
    let _ = writeln!(s, "{pilot} doctor; {pilot} doctor --json > /tmp/doctor.json; rc=$?");
    s += "say DOCTOR-BEGIN; cat /tmp/doctor.json > $R; say \"DOCTOR-END $rc\"\n";
    for t in tests {
        let args: Vec<String> = t.args.iter().map(|a| format!("'{a}'")).collect();
        // Live on the console (tee), the status through a file (ash has no pipefail).
        let _ = writeln!(s, "left=$((end - $(date +%s))); [ $left -gt 1 ] || left=1");
        let _ = writeln!(s, "echo '=== {name}'; {{ timeout -s KILL $left {exe} --test-threads=2 {args}; echo $? > /tmp/rc; }} 2>&1 | tee /tmp/{name}.log",
            name = t.name, exe = t.exe, args = args.join(" "));
        let _ = writeln!(s, "grep -E '^test .* \\.\\.\\. ' /tmp/{name}.log | sed 's/^/RESULT {name} /' > $R", name = t.name);
        let _ = writeln!(s, "grep -E '^SKIP [^ ]+: ' /tmp/{name}.log | sed 's/^SKIP /SKIPPED {name} /' > $R; say \"EXIT {name} $(cat /tmp/rc)\"", name = t.name);
    }
    s += "say DONE\nsync\npoweroff -f\n";
    s
}

/// What the guest reported.
#[derive(Default, Debug)]
pub struct Report {
    pub booted: Option<String>,
    pub refused: Option<(i32, String)>,
    pub doctor: Option<String>,
    pub doctor_exit: Option<i32>,
    /// (binary, test, outcome: ok / FAILED / ignored)
    pub results: Vec<(String, String, String)>,
    /// (binary, exit status)
    pub exits: Vec<(String, i32)>,
    pub done: bool,
    /// Guest setup steps that failed (INSMOD-FAILED, DISK-FAILED lines).
    pub setup_failures: Vec<String>,
    /// (binary, test, why): tests that skipped themselves, saying `SKIP <test>: <why>`.
    pub skipped: Vec<(String, String, String)>,
}

pub fn parse(text: &str) -> Report {
    let mut r = Report::default();
    let mut doctor: Option<String> = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(json) = doctor.as_mut() {
            if let Some(rc) = line.strip_prefix("DOCTOR-END ") {
                r.doctor = doctor.take();
                r.doctor_exit = rc.trim().parse().ok();
            } else {
                json.push_str(line);
                json.push('\n');
            }
            continue;
        }
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "BOOTED" => r.booted = Some(rest.to_string()),
            "REFUSED" => {
                let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                r.refused = Some((code.parse().unwrap_or(-1), msg.to_string()));
            }
            "DOCTOR-BEGIN" => doctor = Some(String::new()),
            "RESULT" => {
                // RESULT <binary> test <name> ... <outcome>
                let (binary, libtest) = rest.split_once(' ').unwrap_or((rest, ""));
                if let Some((name, outcome)) = libtest.strip_prefix("test ").and_then(|l| l.rsplit_once(" ... ")) {
                    r.results.push((binary.to_string(), name.to_string(), outcome.split_whitespace().next().unwrap_or("").to_string()));
                }
            }
            "EXIT" => {
                let (binary, code) = rest.split_once(' ').unwrap_or((rest, ""));
                r.exits.push((binary.to_string(), code.trim().parse().unwrap_or(-1)));
            }
            "SKIPPED" => {
                // SKIPPED <binary> <test>: <why>
                let (binary, skip) = rest.split_once(' ').unwrap_or((rest, ""));
                if let Some((name, why)) = skip.split_once(": ") {
                    r.skipped.push((binary.to_string(), name.to_string(), why.to_string()));
                }
            }
            "DONE" => r.done = true,
            "INSMOD-FAILED" | "DISK-FAILED" => r.setup_failures.push(line.to_string()),
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_report_line() {
        let text = "BOOTED 6.1.0-56-cloud-amd64\r\nREFUSED 5 pilot: this kernel cannot contain a pilot\r\n\
            DOCTOR-BEGIN\r\n{\"a\": 1}\r\nDOCTOR-END 0\r\nRESULT leak test files::write ... ok\r\n\
            RESULT leak test x ... FAILED\r\nSKIPPED rpc reads::zk: /usr/bin/java missing\r\nEXIT leak 101\r\nDONE\r\n";
        let r = parse(text);
        assert_eq!(r.booted.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(r.refused.as_ref().map(|r| r.0), Some(5));
        assert_eq!(r.doctor.as_deref(), Some("{\"a\": 1}\n"));
        assert_eq!(r.doctor_exit, Some(0));
        assert_eq!(r.results[0], ("leak".into(), "files::write".into(), "ok".into()));
        assert_eq!(r.results[1].2, "FAILED");
        assert_eq!(r.exits, vec![("leak".to_string(), 101)]);
        assert_eq!(r.skipped, vec![("rpc".to_string(), "reads::zk".to_string(), "/usr/bin/java missing".to_string())]);
        assert!(r.done);
    }

    #[test]
    fn a_guest_that_died_is_not_done() {
        assert!(!parse("BOOTED 6.12\nRESULT leak test a ... ok\n").done);
    }
}
