//! The RPC suite's servers and clients in the guest (tests/common/servers.rs): what Debian's
//! packages installed on the host (`cargo xtask bootstrap`), at the same paths, with their data
//! files; the image adds the libraries `ldd` names. A server the host lacks is left out and
//! listed: its tests then skip, saying so (`servers::present`), and the matrix shows skip.
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cmd::{command, probe};

/// What goes into the image for `rpc`.
#[derive(Default)]
pub struct Servers {
    pub files: Vec<PathBuf>,
    pub trees: Vec<PathBuf>,
    /// Servers left out, with the file that is missing.
    pub missing: Vec<String>,
}

const PG: &str = "/usr/lib/postgresql/15";
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
const JAVA: &str = "/usr/bin/java";

pub fn contents() -> anyhow::Result<Servers> {
    let mut s = Servers::default();
    s.files.push(workspace_file("tests/helpers/http_store.py"));
    // /bin/bash: zkCli.sh's interpreter (`#!/usr/bin/env bash`); getent and unshare: the DNS case.
    for (server, bins) in [
        ("redis", &["/usr/bin/redis-server", "/usr/bin/redis-cli"][..]),
        ("etcd", &["/usr/bin/etcd", "/usr/bin/etcdctl"]),
        ("dnsmasq", &["/usr/sbin/dnsmasq", "/usr/bin/getent", "/usr/bin/unshare"]),
        ("curl", &["/usr/bin/curl"]),
        ("bash", &["/bin/bash"]),
    ] {
        s.add(server, bins.iter().map(PathBuf::from).collect(), Vec::new());
    }
    s.add("postgresql-15", postgres_files(), vec![PathBuf::from("/usr/share/postgresql/15"), PathBuf::from("/usr/share/zoneinfo")]);
    match zookeeper_files() {
        Ok(files) => s.add("zookeeper", files, vec![PathBuf::from("/usr/share/zookeeper/bin"), PathBuf::from("/etc/zookeeper/conf")]),
        Err(e) => s.missing.push(format!("zookeeper ({e:#})")),
    }
    Ok(s)
}

impl Servers {
    /// All of a server's files and trees, or none of them (listed as missing).
    fn add(&mut self, server: &str, files: Vec<PathBuf>, trees: Vec<PathBuf>) {
        match files.iter().chain(&trees).find(|p| !p.exists()) {
            Some(absent) => self.missing.push(format!("{server} ({} is not installed here)", absent.display())),
            None => {
                self.files.extend(files);
                self.trees.extend(trees);
            }
        }
    }
}

fn workspace_file(rel: &str) -> PathBuf {
    crate::cmd::workspace_root().join(rel)
}

/// initdb, postgres, psql and the dump and backup tools; the server's modules (plpgsql, the
/// text search dictionaries initdb loads, the WAL sender's), without the LLVM JIT provider,
/// whose libLLVM is 100 MiB: without it the server runs queries without JIT, as it says.
fn postgres_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["initdb", "postgres", "psql", "pg_dump", "pg_basebackup"].iter().map(|b| Path::new(PG).join("bin").join(b)).collect();
    let lib = Path::new(PG).join("lib");
    if let Ok(dir) = std::fs::read_dir(&lib) {
        let mut modules: Vec<PathBuf> =
            dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "so") && !p.ends_with("llvmjit.so")).collect();
        modules.sort();
        files.extend(modules);
    } else {
        files.push(lib);
    }
    files
}

/// ZooKeeper's jar and the jars its manifest's Class-Path names, transitively (what the JVM
/// loads); the Java runtime of the package that owns /usr/bin/java, as `dpkg -L` lists it.
fn zookeeper_files() -> anyhow::Result<Vec<PathBuf>> {
    if !Path::new(ZOOKEEPER_JAR).exists() {
        anyhow::bail!("{ZOOKEEPER_JAR} is not installed here");
    }
    let mut files = class_path(ZOOKEEPER_JAR)?;
    files.push(PathBuf::from(JAVA));
    files.extend(java_runtime()?);
    Ok(files)
}

/// `jar` and every jar its Class-Path reaches that exists (Debian's zookeeper.jar names jline.jar,
/// which no dependency of the package installs). Manifests read with Python's zipfile.
fn class_path(jar: &str) -> anyhow::Result<Vec<PathBuf>> {
    const SCRIPT: &str = r#"
import os, sys, zipfile
seen, todo = [], [sys.argv[1]]
while todo:
    jar = todo.pop(0)
    if jar in seen or not os.path.exists(jar):
        continue
    seen.append(jar)
    try:
        text = zipfile.ZipFile(jar).read("META-INF/MANIFEST.MF").decode()
    except KeyError:
        continue
    for line in text.replace("\r\n", "\n").replace("\n ", "").split("\n"):
        if line.startswith("Class-Path:"):
            todo += [os.path.join(os.path.dirname(jar), p) for p in line.split(":", 1)[1].split()]
print("\n".join(seen))
"#;
    let out = probe(command("/usr/bin/python3").args(["-c", SCRIPT, jar])).context("reading the jars' manifests with /usr/bin/python3")?;
    Ok(out.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

/// The files and links of the JRE package /usr/bin/java belongs to (openjdk-17-jre-headless on
/// Debian 12), but for its docs, the 64 GiB-heap CDS archive and javac's symbol table.
fn java_runtime() -> anyhow::Result<Vec<PathBuf>> {
    let java = std::fs::canonicalize(JAVA).with_context(|| format!("{JAVA} is not installed here"))?;
    let owner = probe(command("dpkg").arg("-S").arg(&java)).with_context(|| format!("dpkg -S {}", java.display()))?;
    let package = owner.split(':').next().unwrap_or_default().trim().to_string();
    let list = probe(command("dpkg").args(["-L", &package])).with_context(|| format!("dpkg -L {package}"))?;
    let unneeded = ["/usr/share/", "/usr/lib/debug/", "/docs", "/classes_nocoops.jsa", "/ct.sym"];
    Ok(list
        .lines()
        .filter(|l| !unneeded.iter().any(|u| l.starts_with(u) || l.ends_with(u)))
        .map(PathBuf::from)
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
        .collect())
}
