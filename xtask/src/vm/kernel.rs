//! Debian's cloud kernels for the VM matrix: package names looked up with apt-cache, the .deb
//! fetched with `apt-get download` and unpacked once under target/vm/kernels/<package>/
//! (`dpkg-deb -x`, `depmod -b`).
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::cmd::{command, probe, run};

/// A kernel unpacked on the host.
pub struct Kernel {
    /// `uname -r` inside the guest.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// lib/modules/<release>.
    pub modules: PathBuf,
}

/// The newest `linux-image-<series>...-cloud-amd64` the apt lists know (no -dbg, -unsigned).
pub fn package_for(series: &str) -> anyhow::Result<String> {
    let mut names = cloud_images(series);
    if names.is_empty() {
        run(command("apt-get").arg("update"))?;
        names = cloud_images(series);
    }
    names.sort_by_key(|n| version_key(n));
    names.pop().with_context(|| {
        format!(
            "apt knows no linux-image-{series}*-cloud-amd64 package: check `apt-cache search linux-image-{series}` \
             (6.12 comes from bookworm or bookworm-backports)"
        )
    })
}

fn cloud_images(series: &str) -> Vec<String> {
    let all = probe(command("apt-cache").args(["pkgnames", "linux-image-"])).unwrap_or_default();
    all.lines().filter(|n| matches_series(n, series)).map(str::to_string).collect()
}

/// linux-image-6.1.0-56-cloud-amd64 and linux-image-6.12.117+deb12-cloud-amd64 are of series
/// 6.1 and 6.12; linux-image-6.10... is not 6.1.
fn matches_series(name: &str, series: &str) -> bool {
    let Some(rest) = name.strip_prefix("linux-image-").and_then(|r| r.strip_suffix("-cloud-amd64")) else {
        return false;
    };
    rest.strip_prefix(series).is_some_and(|tail| tail.starts_with('.') || tail.starts_with('-'))
}

/// Numbers in the name, in order: sorts 6.12.117 after 6.12.99.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

/// Download (cached in `vm_dir/debs`) and unpack (cached in `vm_dir/kernels`) the kernel.
pub fn fetch(series: &str, vm_dir: &Path) -> anyhow::Result<Kernel> {
    let package = package_for(series)?;
    let debs = vm_dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let deb = match cached_deb(&debs, &package) {
        Some(deb) => deb,
        None => {
            run(command("apt-get").current_dir(&debs).args(["download", &package]))
                .with_context(|| format!("downloading {package}"))?;
            cached_deb(&debs, &package).with_context(|| format!("apt-get download left no {package}_*.deb in {}", debs.display()))?
        }
    };
    let root = vm_dir.join("kernels").join(&package);
    if !root.join(".unpacked").exists() {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        run(command("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        std::fs::write(root.join(".unpacked"), "")?;
    }
    let release = package.trim_start_matches("linux-image-").to_string();
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    let modules = ["lib/modules", "usr/lib/modules"].iter().map(|d| root.join(d).join(&release)).find(|d| d.is_dir());
    let Some(modules) = modules else { bail!("{package} has no lib/modules/{release}") };
    if !modules.join("modules.dep").exists() {
        run(command("depmod").arg("-b").arg(&root).arg(&release))?;
    }
    if !vmlinuz.is_file() {
        bail!("{package} has no {}", vmlinuz.display());
    }
    Ok(Kernel { release, vmlinuz, modules })
}

fn cached_deb(debs: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{}_", package.replace('+', "%2b"));
    let plain = format!("{package}_");
    std::fs::read_dir(debs).ok()?.flatten().map(|e| e.path()).find(|p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        (name.starts_with(&prefix) || name.starts_with(&plain)) && name.ends_with(".deb")
    })
}

/// `wanted` modules and what they depend on (modules.dep), dependencies first, as paths
/// relative to the modules directory. Built-in modules (not in modules.dep) are left out.
pub fn modules_with_deps(modules_dir: &Path, wanted: &[&str]) -> anyhow::Result<Vec<String>> {
    let dep = std::fs::read_to_string(modules_dir.join("modules.dep")).context("reading modules.dep")?;
    let table: Vec<(&str, Vec<&str>)> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| (m, deps.split_whitespace().collect()))
        .collect();
    let mut order = Vec::new();
    for name in wanted {
        let Some((path, deps)) = table.iter().find(|(p, _)| module_name(p) == *name) else { continue };
        for d in deps.iter().rev().chain(std::iter::once(path)) {
            if !order.iter().any(|o: &String| o == d) {
                order.push(d.to_string());
            }
        }
    }
    Ok(order)
}

/// kernel/fs/overlayfs/overlay.ko.xz -> overlay (modules.dep spells - and _ as in the file).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_match_whole_version_parts() {
        assert!(matches_series("linux-image-6.1.0-56-cloud-amd64", "6.1"));
        assert!(matches_series("linux-image-6.12.117+deb12-cloud-amd64", "6.12"));
        assert!(!matches_series("linux-image-6.12.117+deb12-cloud-amd64", "6.1"));
        assert!(!matches_series("linux-image-6.1.0-56-cloud-amd64-dbg", "6.1"));
    }

    #[test]
    fn newest_sorts_last() {
        let mut v = ["linux-image-6.12.99+deb12-cloud-amd64", "linux-image-6.12.117+deb12-cloud-amd64"];
        v.sort_by_key(|n| version_key(n));
        assert_eq!(v[1], "linux-image-6.12.117+deb12-cloud-amd64");
    }

    #[test]
    fn module_names_drop_directory_and_suffix() {
        assert_eq!(module_name("kernel/fs/overlayfs/overlay.ko.xz"), "overlay");
        assert_eq!(module_name("kernel/drivers/virtio/virtio_pci.ko"), "virtio_pci");
    }
}
