//! Builds the kernel programs (agent-ebpf) for the BPF target and leaves the object in OUT_DIR,
//! where `src/probes/mod.rs` embeds it (`PROBES_ELF`); and names the git commit for `pilot --version`.
use anyhow::{Context as _, anyhow};

#[path = "src/build_version.rs"]
mod build_version;

fn main() -> anyhow::Result<()> {
    version();
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "agent-ebpf")
        .ok_or_else(|| anyhow!("agent-ebpf package not found"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "agent-ebpf", root_dir: root_dir.as_str(), ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}

/// PILOT_VERSION for clap. Rerun on another commit (HEAD, its ref, the index) and on edits of
/// what goes into the binary, so `-dirty` follows them; not on every build.
fn version() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("agent/ is in the workspace");
    let git = build_version::describe(workspace);
    if git.is_none() && workspace.join(".git").exists() {
        println!("cargo:warning=pilot --version names no commit: git could not describe {}", workspace.display());
    }
    for path in git.iter().flat_map(|g| &g.watch) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for dir in ["src", "../agent-common", "../policies", "build.rs"] {
        println!("cargo:rerun-if-changed={}", manifest.join(dir).display());
    }
    let package = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    println!("cargo:rustc-env=PILOT_VERSION={}", build_version::version(&package, git.as_ref()));
    // The man pages' date: the commit's, so every build of a commit makes the same pages.
    println!("cargo:rustc-env=PILOT_COMMIT_DATE={}", git.as_ref().map(|g| g.date.as_str()).unwrap_or(""));
}
