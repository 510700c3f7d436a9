//! `cargo xtask ansible-test` (also part of `cargo xtask test`): ansible-core from PyPI in a
//! venv under target/, the rollout playbook (deploy/ansible) applied twice to this machine
//! (connection=local); the second run must change nothing. The package is purged afterwards.
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::cmd::{command, probe, run, target_dir, workspace_root};
use crate::package::{Installed, build_deb};

/// ansible-core releases that run on Debian 12's Python 3.11.
const ANSIBLE: &str = "ansible-core>=2.17,<2.18";

pub fn ansible_test() -> anyhow::Result<()> {
    let playbook = ansible_playbook()?;
    let deb = build_deb()?;
    let _cleanup = Installed::guard()?;
    let first = apply(&playbook, &deb)?;
    let second = apply(&playbook, &deb)?;
    let (c1, c2) = (changed(&first)?, changed(&second)?);
    println!("[ansible] first run changed={c1}, second run changed={c2}");
    if c1 == 0 {
        bail!("the first run changed nothing: was pilot already installed?\n{first}");
    }
    if c2 != 0 {
        bail!("the playbook is not idempotent: its second run changed {c2} task(s):\n{second}");
    }
    if probe(command("dpkg-query").args(["-W", "-f=${Status}", "pilot"])).is_none_or(|s| !s.contains("install ok installed")) {
        bail!("the playbook did not install the pilot package");
    }
    Ok(())
}

/// ansible-playbook from a venv under target/ (created once).
fn ansible_playbook() -> anyhow::Result<PathBuf> {
    let venv = target_dir().join("ansible-venv");
    let bin = venv.join("bin/ansible-playbook");
    if probe(command(&bin).arg("--version")).is_some() {
        println!("[ansible] {} (already there)", bin.display());
        return Ok(bin);
    }
    run(command("python3").args(["-m", "venv"]).arg(&venv)).context("creating the venv (apt-get install python3-venv)")?;
    run(command(venv.join("bin/pip")).args(["install", "--quiet", ANSIBLE])).context("pip install ansible-core from PyPI")?;
    Ok(bin)
}

fn apply(playbook: &PathBuf, deb: &std::path::Path) -> anyhow::Result<String> {
    let dir = workspace_root().join("deploy/ansible");
    let out = command(playbook)
        .current_dir(&dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("ANSIBLE_NOCOLOR", "1")
        .args(["-i", "inventory/local.ini", "site.yml", "-e"])
        .arg(format!("pilot_deb={}", deb.display()))
        .output()
        .context("running ansible-playbook")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    if !out.status.success() {
        bail!("ansible-playbook failed (exit {:?})", out.status.code());
    }
    Ok(text)
}

/// Tasks changed on localhost, summed over the recap lines.
fn changed(output: &str) -> anyhow::Result<u64> {
    let recaps: Vec<u64> = output
        .lines()
        .filter(|l| l.starts_with("localhost"))
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("changed=")))
        .filter_map(|n| n.parse().ok())
        .collect();
    if recaps.is_empty() {
        bail!("no PLAY RECAP line for localhost in the output");
    }
    Ok(recaps.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_changed_from_the_recap() {
        let out = "PLAY RECAP ****\nlocalhost                  : ok=9    changed=3    unreachable=0    failed=0\n";
        assert_eq!(changed(out).unwrap(), 3);
        assert!(changed("nothing").is_err());
    }
}
