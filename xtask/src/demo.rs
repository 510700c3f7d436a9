//! `cargo xtask demo`: trace a small script with a release build of pilot and keep the run.
//!
//! A loopback TCP listener (python3) is started by xtask itself, before the trace, so it is not
//! part of the traced tree; the traced bash script writes, appends, renames and removes a file,
//! connects to the listener and sends SIGTERM to a child.
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

use crate::bootstrap::{apt_packages, bootstrap};
use crate::cmd::{cargo, command, probe, run, status, target_dir, workspace_root};

/// Binds 127.0.0.1:0, writes the port to argv[1] (atomically), accepts one connection, exits.
const LISTENER: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.settimeout(300)
try:
    s.accept()[0].close()
except OSError:
    sys.exit(1)
"#;

pub fn demo() -> anyhow::Result<()> {
    bootstrap("demo")?;
    apt_packages(&["python3"])?; // the loopback listener

    run(cargo()
        .current_dir(workspace_root())
        .args(["build", "--release", "--bin", "pilot"]))?;
    let pilot = target_dir().join("release").join("pilot");
    if !pilot.is_file() {
        bail!(
            "cargo built pilot but {} is missing: is CARGO_TARGET_DIR set differently?",
            pilot.display()
        );
    }

    let scratch = TempDir::new()?;
    let listener = Listener::start(&scratch.0)?;
    println!(
        "[demo] loopback listener (pid {}) on 127.0.0.1:{}",
        listener.child.id(),
        listener.port
    );

    let demo_dir = target_dir().join("demo");
    std::fs::create_dir_all(&demo_dir)
        .with_context(|| format!("could not create {}", demo_dir.display()))?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run_dir = demo_dir.join(format!("run-{secs}"));

    let traced = status(
        command(&pilot)
            .arg("trace")
            .arg("--out")
            .arg(&run_dir)
            .args(["--", "bash", "-c", &script(&scratch.0, listener.port)]),
    )?;
    drop(listener); // kills it if the script never connected
    drop(scratch);
    if !traced.success() {
        bail!(
            "`pilot trace` failed ({traced}); rerun it by hand with -v for details, e.g.\n  {} trace -v --out /tmp/pilot-run -- true",
            pilot.display()
        );
    }

    println!("[demo] run directory (kept): {}", run_dir.display());
    for file in ["events.jsonl", "summary.json"] {
        let path = run_dir.join(file);
        let note = if path.is_file() {
            ""
        } else {
            "   (missing: pilot did not write it)"
        };
        println!("  {file:<13} {}{note}", path.display());
    }
    Ok(())
}

/// The traced script; `set -e` so a failed step fails the demo instead of hiding in the trace.
fn script(dir: &Path, port: u16) -> String {
    let dir = dir.to_string_lossy().replace('\'', r"'\''");
    format!(
        "set -e
cd '{dir}'
mkdir d
echo hello > d/a.txt
echo more >> d/a.txt
mv d/a.txt d/b.txt
rm d/b.txt
exec 3<>/dev/tcp/127.0.0.1/{port}
exec 3>&-
sleep 30 & kill -TERM $!
wait
"
    )
}

/// A `mktemp -d` directory under /tmp, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let out = probe(command("mktemp").args(["-d", "/tmp/pilot-demo.XXXXXX"]))
            .context("`mktemp -d /tmp/pilot-demo.XXXXXX` failed: is /tmp writable?")?;
        Ok(Self(PathBuf::from(out.trim())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {err}", self.0.display());
        }
    }
}

/// The python3 loopback listener, killed (by pid) on drop if still running.
struct Listener {
    child: Child,
    port: u16,
}

impl Listener {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        let port_file = dir.join("port");
        let child = command("python3")
            .args(["-c", LISTENER])
            .arg(&port_file)
            .stdin(Stdio::null())
            .spawn()
            .context(
                "could not start python3 for the loopback listener: apt-get install python3",
            )?;
        let mut listener = Self { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse()
            {
                listener.port = port;
                return Ok(listener);
            }
            if let Some(exit) = listener.child.try_wait()? {
                bail!("the loopback listener (python3) exited ({exit}) before reporting its port");
            }
            if Instant::now() > deadline {
                bail!("the loopback listener (python3) did not report its port within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
