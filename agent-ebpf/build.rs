//! Rebuild when bpf-linker changes: it is an undeclared dependency of this crate
//! (https://github.com/rust-lang/cargo/issues/12385 keeps it from being an artifact dependency).
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
