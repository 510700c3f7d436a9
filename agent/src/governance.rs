//! Policy governance (seed essay, sections 5 and 7.6): policies carry a version and may carry
//! an expiry; they can be signed (`pilot policy sign FILE --key K` writes `FILE.sig`), and the
//! host (`policy_signers` in /etc/pilot/pilot.toml) or a policy's gate can require that every
//! policy in use be signed by a listed key, so loosening `max_risk` or a containment floor
//! takes a signature, not an edit. Also the commit-time gate keys (approvals, max_age,
//! rollback readiness) combined over the policies in use.
use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::{
    error::UsageError,
    keys::{self, Named},
    policy::{self, BUILT_IN, Loaded},
    rundir::Stamp,
};

pub const SIGNATURE_SCHEMA: &str = "pilot.policy-signature/v1";
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_ROLLBACK_MAX_BYTES: u64 = 1 << 30;

/// `FILE.sig`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PolicySignature {
    #[serde(flatten)]
    pub body: SignatureBody,
    pub signature: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SignatureBody {
    pub schema: String,
    /// SHA-256 of the policy file's bytes.
    pub policy_sha256: String,
    pub signer: String,
    pub signer_name: String,
    pub signed: Stamp,
}

fn sig_path(source: &str) -> PathBuf {
    PathBuf::from(format!("{source}.sig"))
}

/// The directory a policy's relative key paths are taken from.
pub fn base_of(source: &str) -> &Path {
    if source == BUILT_IN { Path::new("") } else { Path::new(source).parent().unwrap_or(Path::new("")) }
}

/// Gate keys that parse checks (with the key's name for the error's line).
pub fn validate_gate(source: &str, g: &policy::Gate) -> Result<(), (&'static str, String)> {
    if let Some(age) = &g.max_age {
        parse_age(age).map_err(|e| ("max_age", e))?;
    }
    for (key, list) in [("approvers", &g.approvers), ("policy_signers", &g.policy_signers)] {
        for spec in list.iter().flatten() {
            keys::load_keys(spec, base_of(source)).map_err(|e| (key, e.0))?;
        }
    }
    Ok(())
}

fn parse_age(s: &str) -> Result<Duration, String> {
    crate::run::parse_duration(s).map_err(|_| format!("`{s}`: give a duration such as 2s, 30m, 1h"))
}

/// Check policies as loaded: none expired, every `.sig` valid, and all signed by a required
/// signer when the host or a gate asks for it. Errors (exit 2) name the policy.
pub fn admit(policies: &mut [Loaded]) -> Result<(), UsageError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    for p in policies.iter_mut() {
        if let Some(exp) = &p.policy.expires {
            let at = unix_secs(exp).ok_or_else(|| UsageError::new(format!("{}: expires = {exp}: give a date (2026-06-30) or a date-time", p.source)))?;
            if now >= at {
                return Err(UsageError::new(format!(
                    "policy {} expired on {exp}: it is refused; review it and raise its version with a later `expires`",
                    p.source
                )));
            }
        }
        p.signed_by = signature_of(p)?.map(|k| k.name);
    }
    let required = required_signers(policies)?;
    if required.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = required.iter().map(|k| k.name.clone()).collect();
    for p in policies.iter() {
        let signer = signature_of(p)?;
        if !signer.as_ref().is_some_and(|s| required.iter().any(|r| r.key == s.key)) {
            let what = match signer {
                None if p.source == BUILT_IN => "the built-in policy carries no signature: give a signed copy of it with --policy".to_string(),
                None => format!("it is not signed (sign it: pilot policy sign {} --key KEY)", p.source),
                Some(s) => format!("its signer {} is not one of them", s.name),
            };
            return Err(UsageError::new(format!("policy {}: policies must be signed by one of {}: {what}", p.source, names.join(", "))));
        }
    }
    Ok(())
}

/// The signer of a policy's valid `FILE.sig`, None without one; a `.sig` that does not match
/// the file is an error (the policy changed after it was signed).
fn signature_of(p: &Loaded) -> Result<Option<Named>, UsageError> {
    if p.source == BUILT_IN {
        return Ok(None);
    }
    let path = sig_path(&p.source);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let bad = |why: &str| UsageError::new(format!("{}: {why}: sign the policy again (pilot policy sign {} --key KEY) or remove the .sig", path.display(), p.source));
    let sig: PolicySignature = serde_json::from_str(&text).map_err(|_| bad("not a policy signature"))?;
    if sig.body.policy_sha256 != p.sha256 {
        return Err(bad("the policy changed after it was signed"));
    }
    let key = keys::parse_literal(&sig.body.signer).ok_or_else(|| bad("malformed signer"))?;
    let body = serde_json::to_vec(&sig.body).expect("serializes");
    if !keys::verify(&key, keys::POLICY, &body, &sig.signature) {
        return Err(bad("the signature does not verify"));
    }
    Ok(Some(Named { name: sig.body.signer_name.clone(), key }))
}

/// Signers required by the host's config and by every policy's gate.
fn required_signers(policies: &[Loaded]) -> Result<Vec<Named>, UsageError> {
    let mut out = host_policy_signers()?;
    for p in policies {
        for spec in p.policy.gate.iter().flat_map(|g| g.policy_signers.iter().flatten()) {
            out.extend(keys::load_keys(spec, base_of(&p.source)).map_err(|e| UsageError::new(format!("{}: gate.policy_signers: {}", p.source, e.0)))?);
        }
    }
    Ok(out)
}

/// `policy_signers` of the host's config (`PILOT_CONFIG` or /etc/pilot/pilot.toml), read by
/// in-process runs too: a run that bypasses the daemon is held to the same rule.
fn host_policy_signers() -> Result<Vec<Named>, UsageError> {
    let path = std::env::var_os("PILOT_CONFIG").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(crate::daemon::config::DEFAULT_PATH));
    if !path.exists() {
        return Ok(Vec::new());
    }
    let config = crate::daemon::config::Config::load(Some(&path)).map_err(|e| UsageError::new(crate::error::one_line(&e)))?;
    let mut out = Vec::new();
    for spec in &config.policy_signers {
        out.extend(keys::load_keys(spec, Path::new("")).map_err(|e| UsageError::new(format!("config {}: policy_signers: {}", path.display(), e.0)))?);
    }
    Ok(out)
}

/// Unix seconds of a TOML date or date-time (a date alone: 00:00 UTC; no offset: UTC).
pub fn unix_secs(d: &toml::value::Datetime) -> Option<i64> {
    let date = d.date?;
    let days = days_from_civil(date.year as i64, date.month as i64, date.day as i64);
    let (h, m, s) = d.time.map(|t| (t.hour as i64, t.minute as i64, t.second as i64)).unwrap_or((0, 0, 0));
    let offset = match d.offset {
        Some(toml::value::Offset::Custom { minutes }) => minutes as i64 * 60,
        _ => 0,
    };
    Some(days * 86400 + h * 3600 + m * 60 + s - offset)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `pilot policy sign FILE --key K`.
pub fn cmd_sign(file: &Path, key: &Path) -> Result<i32> {
    let loaded = policy::load(file)?;
    let secret = keys::load_secret(key)?;
    let public = secret.verifying_key();
    let body = SignatureBody {
        schema: SIGNATURE_SCHEMA.into(),
        policy_sha256: loaded.sha256.clone(),
        signer: keys::literal(&public),
        signer_name: keys::load_public(key).map(|n| n.name).unwrap_or_else(|_| keys::fingerprint(&public)),
        signed: Stamp::now(),
    };
    let signature = keys::sign(&secret, keys::POLICY, &serde_json::to_vec(&body).expect("serializes"));
    let out = sig_path(&file.display().to_string());
    let version = loaded.policy.version.map(|v| format!(" version {v}")).unwrap_or_default();
    std::fs::write(&out, crate::rundir::pretty(&PolicySignature { body, signature }))
        .map_err(|e| UsageError::new(format!("cannot write {}: {e}", out.display())))?;
    println!("signed {}{version} (sha256 {}) with {} ({}): {}", file.display(), &loaded.sha256[..12], key.display(), keys::fingerprint(&public), out.display());
    Ok(0)
}

/// The commit-time gate of the policies in use: the strictest of each key.
#[derive(Debug, Clone)]
pub struct CommitGate {
    pub required_approvals: u32,
    pub approvers: Vec<Named>,
    pub max_age: Duration,
    pub rollback_readiness_required: bool,
    pub rollback_max_bytes: u64,
}

impl CommitGate {
    pub fn of(policies: &[Loaded]) -> Result<CommitGate, UsageError> {
        let mut g = CommitGate {
            required_approvals: 0,
            approvers: Vec::new(),
            max_age: DEFAULT_MAX_AGE,
            rollback_readiness_required: false,
            rollback_max_bytes: DEFAULT_ROLLBACK_MAX_BYTES,
        };
        for p in policies {
            let Some(gate) = &p.policy.gate else { continue };
            g.required_approvals = g.required_approvals.max(gate.required_approvals.unwrap_or(0));
            for spec in gate.approvers.iter().flatten() {
                for k in keys::load_keys(spec, base_of(&p.source)).map_err(|e| UsageError::new(format!("{}: gate.approvers: {}", p.source, e.0)))? {
                    if !g.approvers.iter().any(|a| a.key == k.key) {
                        g.approvers.push(k);
                    }
                }
            }
            if let Some(age) = &gate.max_age {
                g.max_age = g.max_age.min(parse_age(age).map_err(|e| UsageError::new(format!("{}: gate.max_age {e}", p.source)))?);
            }
            g.rollback_readiness_required |= gate.rollback_readiness_required.unwrap_or(false);
            if let Some(b) = gate.rollback_max_bytes {
                g.rollback_max_bytes = g.rollback_max_bytes.min(b);
            }
        }
        if g.required_approvals > 0 && g.approvers.is_empty() {
            return Err(UsageError::new(format!(
                "the gate requires {} approval(s) but names no approvers: list their public keys in [gate] approvers",
                g.required_approvals
            )));
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_unix_times() {
        let d: toml::value::Datetime = "1970-01-02".parse().unwrap();
        assert_eq!(unix_secs(&d), Some(86400));
        let d: toml::value::Datetime = "2026-06-30T12:00:00+02:00".parse().unwrap();
        assert_eq!(unix_secs(&d), Some(1_782_813_600));
        let d: toml::value::Datetime = "2000-03-01T00:00:00Z".parse().unwrap();
        assert_eq!(unix_secs(&d), Some(951_868_800));
    }

    #[test]
    fn expired_policies_are_refused_naming_them() {
        let mut p = vec![policy::parse("old.toml", "version = 2\nexpires = 2001-01-01\n").unwrap()];
        let err = admit(&mut p).unwrap_err();
        assert!(err.0.contains("old.toml expired on 2001-01-01"), "{err}");
        let mut p = vec![policy::parse("new.toml", "version = \"2026.1\"\nexpires = 2999-01-01\n").unwrap()];
        admit(&mut p).unwrap();
        assert_eq!(p[0].reference().version.as_deref(), Some("2026.1"));
    }

    #[test]
    fn gate_keys_are_strict_and_combine_strictly() {
        let err = policy::parse("p.toml", "[gate]\nmax_risk = 0.5\nmax_age = \"soon\"\n").unwrap_err();
        assert!(err.0.starts_with("p.toml:3: gate.max_age"), "{err}");
        let err = policy::parse("p.toml", "[gate]\nrequired_approval = 1\n").unwrap_err();
        assert!(err.0.starts_with("p.toml:2:") && err.0.contains("required_approval"), "{err}");
        let a = policy::parse("a", "[gate]\nmax_age = \"2s\"\n").unwrap();
        let b = policy::parse("b", "[gate]\nmax_age = \"10m\"\nrollback_readiness_required = true\n").unwrap();
        let g = CommitGate::of(&[a, b]).unwrap();
        assert_eq!((g.max_age, g.rollback_readiness_required, g.required_approvals), (Duration::from_secs(2), true, 0));
        let c = policy::parse("c", "[gate]\nrequired_approvals = 1\n").unwrap();
        assert!(CommitGate::of(&[c]).unwrap_err().0.contains("names no approvers"));
    }
}
