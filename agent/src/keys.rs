//! ed25519 keys (ed25519-dalek): the host's run key, which signs every decision and journal
//! entry, and the keys of approvers and policy signers. Key files are one text line each, so
//! an operator can read, copy and diff them:
//!
//! - secret `FILE` (mode 0600): `pilot-ed25519-secret HEX32`
//! - public `FILE.pub`: `pilot-ed25519 HEX32 NAME`
//!
//! Wherever a policy or the daemon config names keys (`approvers`, `policy_signers`), an entry
//! is a public key written `ed25519:HEX32`, a `.pub` file, or a directory of `.pub` files.
//! Every signature is over a domain tag and the message, so a signature made for one purpose
//! (an approval) never verifies as another (a journal entry).
use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::{Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::{error::UsageError, policy::sha256_hex};

/// Where the host's run key lives unless `PILOT_RUN_KEY` names another file.
pub const RUN_KEY_DEFAULT: &str = "/etc/pilot/run.key";
const SECRET_TAG: &str = "pilot-ed25519-secret";
const PUBLIC_TAG: &str = "pilot-ed25519";
const LITERAL: &str = "ed25519:";

/// Signature domains: what a signature is for.
pub const DECISION: &str = "pilot.decision/v1";
pub const APPROVAL: &str = "pilot.approval/v1";
pub const JOURNAL: &str = "pilot.journal/v1";
pub const POLICY: &str = "pilot.policy-signature/v1";
pub const ROLLBACK: &str = "pilot.rollback/v1";

/// A public key with the name it is known by (its file's stem, or its fingerprint).
#[derive(Clone, Debug)]
pub struct Named {
    pub name: String,
    pub key: VerifyingKey,
}

impl Named {
    pub fn hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }
}

/// `ed25519:HEX`: how keys are written inside JSON files and policies.
pub fn literal(key: &VerifyingKey) -> String {
    format!("{LITERAL}{}", hex::encode(key.as_bytes()))
}

/// A short, stable name for a key: the first 16 hex digits of its SHA-256.
pub fn fingerprint(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_string()
}

pub fn parse_literal(s: &str) -> Option<VerifyingKey> {
    let hex = s.strip_prefix(LITERAL)?;
    let bytes: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Sign `msg` for `domain`; the signature as hex.
pub fn sign(key: &SigningKey, domain: &str, msg: &[u8]) -> String {
    hex::encode(key.sign(&tagged(domain, msg)).to_bytes())
}

/// Does `sig` (hex) sign `msg` for `domain` with `key`?
pub fn verify(key: &VerifyingKey, domain: &str, msg: &[u8], sig: &str) -> bool {
    let Some(bytes) = hex::decode(sig).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()) else { return false };
    key.verify(&tagged(domain, msg), &Signature::from_bytes(&bytes)).is_ok()
}

fn tagged(domain: &str, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + 1 + msg.len());
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    out.extend_from_slice(msg);
    out
}

/// A new key from the kernel's random source.
fn generate() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    let mut filled = 0;
    while filled < seed.len() {
        filled += rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty()).context("getrandom")?;
    }
    Ok(SigningKey::from_bytes(&seed))
}

fn pub_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn secret_text(key: &SigningKey) -> String {
    format!("{SECRET_TAG} {}\n", hex::encode(key.to_bytes()))
}

fn public_text(key: &VerifyingKey, name: &str) -> String {
    format!("{PUBLIC_TAG} {} {name}\n", hex::encode(key.as_bytes()))
}

fn stem(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().trim_end_matches(".pub").trim_end_matches(".key").to_string()).unwrap_or_default()
}

/// Write a new secret key at `path` (created exclusively, mode 0600) and its `path.pub`.
fn write_new(path: &Path, key: &SigningKey) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(secret_text(key).as_bytes())?;
    f.sync_all()?;
    fs::write(pub_path(path), public_text(&key.verifying_key(), &stem(path)))
}

/// A secret key file.
pub fn load_secret(path: &Path) -> Result<SigningKey, UsageError> {
    let bad = |why: String| UsageError::new(format!("key {}: {why}: give a secret key made by `pilot key new FILE`", path.display()));
    let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let hex = text.trim().strip_prefix(SECRET_TAG).map(str::trim).ok_or_else(|| bad("not a pilot secret key".into()))?;
    let bytes: [u8; 32] = hex::decode(hex).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| bad("malformed key".into()))?;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        return Err(bad(format!("mode {:o} lets others read it: chmod 600 it", meta.permissions().mode() & 0o777)));
    }
    Ok(SigningKey::from_bytes(&bytes))
}

/// A public key file (`FILE.pub`), or the public half of a secret key file.
pub fn load_public(path: &Path) -> Result<Named, UsageError> {
    let bad = |why: String| UsageError::new(format!("public key {}: {why}", path.display()));
    let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut words = text.split_whitespace();
    match words.next() {
        Some(PUBLIC_TAG) => {
            let bytes: [u8; 32] =
                words.next().and_then(|h| hex::decode(h).ok()).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("malformed key".into()))?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
            Ok(Named { name: stem(path), key })
        }
        Some(SECRET_TAG) => Ok(Named { name: stem(path), key: load_secret(path)?.verifying_key() }),
        _ => Err(bad(format!("not a pilot key (a `{PUBLIC_TAG} HEX NAME` line)"))),
    }
}

/// The keys an `approvers` or `policy_signers` entry names: `ed25519:HEX`, a `.pub` file or a
/// directory of them; relative paths are taken from `base` (the policy file's directory).
pub fn load_keys(spec: &str, base: &Path) -> Result<Vec<Named>, UsageError> {
    if let Some(key) = parse_literal(spec) {
        return Ok(vec![Named { name: fingerprint(&key), key }]);
    }
    if spec.starts_with(LITERAL) {
        return Err(UsageError::new(format!("`{spec}`: an ed25519 key is 64 hex digits after `{LITERAL}`")));
    }
    let path = base.join(spec);
    if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(&path)
            .map_err(|e| UsageError::new(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        files.sort();
        return files.iter().map(|f| load_public(f)).collect();
    }
    Ok(vec![load_public(&path)?])
}

pub fn run_key_path() -> PathBuf {
    std::env::var_os("PILOT_RUN_KEY").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(RUN_KEY_DEFAULT))
}

/// The host's run key, created at first use. Concurrent first pilots race to create it: each
/// writes its own candidate and hard-links it into place, and the first link wins.
pub fn run_key() -> Result<&'static SigningKey> {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    if let Some(k) = KEY.get() {
        return Ok(k);
    }
    let path = run_key_path();
    let key = match load_secret(&path) {
        Ok(k) => k,
        Err(_) if !path.exists() => create_run_key(&path)?,
        Err(e) => return Err(e.into()),
    };
    Ok(KEY.get_or_init(|| key))
}

fn create_run_key(path: &Path) -> Result<SigningKey> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).with_context(|| format!("creating {} for the run key", dir.display()))?;
    let candidate = dir.join(format!(".{}.{}", stem(path), std::process::id()));
    let _ = fs::remove_file(&candidate);
    let key = generate()?;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&candidate)
        .with_context(|| format!("creating the run key {}", path.display()))?;
    f.write_all(secret_text(&key).as_bytes())?;
    f.sync_all()?;
    let linked = fs::hard_link(&candidate, path);
    let _ = fs::remove_file(&candidate);
    match linked {
        Ok(()) => {
            fs::write(pub_path(path), public_text(&key.verifying_key(), "run"))?;
            tracing::info!(path = %path.display(), fingerprint = fingerprint(&key.verifying_key()), "created the host's run key");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(load_secret(path)?),
        Err(e) => Err(e).with_context(|| format!("creating the run key {}", path.display())),
    }
}

/// The run key's public half, for verifying: from the secret when readable, else `run.key.pub`.
pub fn run_public() -> Option<VerifyingKey> {
    let path = run_key_path();
    load_secret(&path).map(|k| k.verifying_key()).ok().or_else(|| load_public(&pub_path(&path)).ok().map(|n| n.key))
}

/// `pilot key new FILE`.
pub fn cmd_new(path: &Path) -> Result<i32> {
    if path.exists() {
        return Err(UsageError::new(format!("{} exists: pick another file (pilot never overwrites a key)", path.display())).into());
    }
    let key = generate()?;
    write_new(path, &key).map_err(|e| UsageError::new(format!("cannot write {}: {e}", path.display())))?;
    let public = key.verifying_key();
    println!("secret key {} (mode 600)", path.display());
    println!("public key {} ({})", pub_path(path).display(), literal(&public));
    println!("fingerprint {}", fingerprint(&public));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_bound_to_key_domain_and_message() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = SigningKey::from_bytes(&[2; 32]);
        let sig = sign(&a, DECISION, b"m");
        assert!(verify(&a.verifying_key(), DECISION, b"m", &sig));
        assert!(!verify(&a.verifying_key(), APPROVAL, b"m", &sig), "another domain");
        assert!(!verify(&a.verifying_key(), DECISION, b"n", &sig), "another message");
        assert!(!verify(&b.verifying_key(), DECISION, b"m", &sig), "another key");
        assert!(!verify(&a.verifying_key(), DECISION, b"m", "zz"), "not hex");
    }

    #[test]
    fn key_files_round_trip_and_name_keys() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("alice");
        cmd_new(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let secret = load_secret(&path).unwrap();
        let public = load_public(&d.path().join("alice.pub")).unwrap();
        assert_eq!(public.name, "alice");
        assert_eq!(public.key, secret.verifying_key());
        assert!(cmd_new(&path).is_err(), "never overwrites");
        let by_dir = load_keys(".", d.path()).unwrap();
        assert_eq!(by_dir.len(), 1);
        let lit = literal(&public.key);
        assert_eq!(load_keys(&lit, d.path()).unwrap()[0].key, public.key);
        assert!(load_keys("ed25519:abc", d.path()).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_secret(&path).unwrap_err().0.contains("chmod 600"));
    }
}
