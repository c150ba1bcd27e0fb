//! A JWKS file of public keys chosen by the token's `kid`. The file is re-read when it
//! changes (checked at most every few seconds), so keys rotate without a restart: publish
//! the new key next to the old one, switch the issuer over, then drop the old key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::keys::VerifyingKey;

/// How often the file's modification time is looked at.
const RECHECK_EVERY: Duration = Duration::from_secs(2);

type KeysByKid = HashMap<String, Arc<VerifyingKey>>;

pub struct JwksFile {
    path: PathBuf,
    template: Validation,
    state: RwLock<JwksState>,
    /// Bumped whenever a re-read changes the keys: tokens verified under an older set
    /// must be verified again (their key may be gone).
    generation: AtomicU64,
}

struct JwksState {
    keys: KeysByKid,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl JwksFile {
    /// Reads the file once; a missing or invalid file refuses to start.
    pub fn load(path: &Path, template: Validation) -> anyhow::Result<JwksFile> {
        let (keys, modified) = read_keys(path, &template)?;
        Ok(JwksFile {
            path: path.to_owned(),
            template,
            state: RwLock::new(JwksState { keys, modified, checked: Instant::now() }),
            generation: AtomicU64::new(0),
        })
    }

    /// The current key set's number, after looking for a newer file if one is due.
    pub fn generation(&self) -> u64 {
        self.refresh_if_due();
        self.generation.load(Ordering::Acquire)
    }

    pub fn key(&self, kid: &str) -> Option<Arc<VerifyingKey>> {
        self.refresh_if_due();
        self.state.read().ok()?.keys.get(kid).cloned()
    }

    /// A file that became unreadable or invalid keeps the keys last read: a botched
    /// rotation must not lock every client out.
    fn refresh_if_due(&self) {
        let due = self.state.read().map(|state| state.checked.elapsed() >= RECHECK_EVERY).unwrap_or(false);
        if !due {
            return;
        }
        let Ok(mut state) = self.state.write() else { return };
        if state.checked.elapsed() < RECHECK_EVERY {
            return;
        }
        state.checked = Instant::now();
        let modified = std::fs::metadata(&self.path).and_then(|meta| meta.modified()).ok();
        if modified.is_none() || modified == state.modified {
            return;
        }
        if let Ok((keys, modified)) = read_keys(&self.path, &self.template) {
            state.keys = keys;
            state.modified = modified;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn read_keys(path: &Path, template: &Validation) -> anyhow::Result<(KeysByKid, Option<SystemTime>)> {
    let modified = std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let raw = std::fs::read(path).with_context(|| format!("reading the JWKS file {}", path.display()))?;
    let set: JwkSet =
        serde_json::from_slice(&raw).with_context(|| format!("parsing the JWKS file {}", path.display()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            bail!("every key in the JWKS file needs a \"kid\"");
        };
        let algorithms = match jwk.common.key_algorithm {
            Some(alg) => vec![Algorithm::try_from(alg).with_context(|| format!("key {kid:?}: unsupported alg"))?],
            None => match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => vec![Algorithm::RS256],
                AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256, Algorithm::ES384],
                AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                _ => bail!("key {kid:?}: only public keys (RSA, EC, OKP) belong in the JWKS file"),
            },
        };
        if algorithms.iter().any(|alg| matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) {
            bail!("key {kid:?}: shared secrets do not belong in the JWKS file");
        }
        let decoding = DecodingKey::from_jwk(jwk).with_context(|| format!("key {kid:?}"))?;
        let mut validation = template.clone();
        validation.algorithms = algorithms;
        keys.insert(kid, Arc::new(VerifyingKey { decoding, validation }));
    }
    if keys.is_empty() {
        bail!("the JWKS file {} holds no keys", path.display());
    }
    Ok((keys, modified))
}
