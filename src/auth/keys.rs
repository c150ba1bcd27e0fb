use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};

use super::jwks::JwksFile;
use super::verified::VerifiedTokens;
use super::{Claims, Role};
use crate::config::{AuthSettings, Settings};

const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// A key that verifies signatures, with the rules its tokens must pass (its algorithms,
/// issuer, audience, expiry, not-before).
pub struct VerifyingKey {
    pub(super) decoding: DecodingKey,
    pub(super) validation: Validation,
}

/// The keys that verify bearer tokens, resolved once at start-up: an HS256 shared secret,
/// a public key (RS256/ES256 PEM), a JWKS file chosen by `kid`, or several of these. Each key
/// accepts only its own algorithm family, so a token cannot switch an RSA key into an HMAC
/// secret (algorithm confusion).
pub struct JwtKeys {
    secret: Option<Vec<u8>>,
    hmac: Option<VerifyingKey>,
    public_key: Option<VerifyingKey>,
    jwks: Option<JwksFile>,
    issuer: Option<String>,
    audience: Option<String>,
    verified: VerifiedTokens,
}

impl JwtKeys {
    /// Keys from `auth.*` (values or `*_file` paths). With none configured, only the
    /// development profile (`auth.generate_dev_secret`) starts, with a random secret kept in
    /// the data directory; anything else refuses to start.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<(JwtKeys, Option<std::path::PathBuf>)> {
        let auth = &settings.auth;
        let template = claim_rules(auth);
        let mut generated = None;
        let mut secret = secret_or_file(auth.jwt_secret.expose(), &auth.jwt_secret_file, "auth.jwt_secret_file")?;
        let public_pem = secret_or_file(&auth.public_key, &auth.public_key_file, "auth.public_key_file")?;
        let jwks = match auth.jwks_file.as_str() {
            "" => None,
            path => Some(JwksFile::load(Path::new(path), template.clone())?),
        };
        if secret.is_none() && public_pem.is_none() && jwks.is_none() {
            if !auth.generate_dev_secret {
                bail!(
                    "no JWT key configured: set HOIST__AUTH__JWT_SECRET (or _FILE), HOIST__AUTH__PUBLIC_KEY (or _FILE) \
                     or HOIST__AUTH__JWKS_FILE (only the development profile generates a secret)"
                );
            }
            let path = settings.server.data_dir.join(DEV_SECRET_FILE);
            secret = Some(dev_secret(&path)?);
            generated = Some(path);
        }
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            bail!("the JWT secret must be at least 32 bytes");
        }
        let hmac = secret.as_ref().map(|secret| VerifyingKey {
            decoding: DecodingKey::from_secret(secret),
            validation: with_algorithms(&template, AlgorithmFamily::Hmac),
        });
        let public_key = public_pem.as_deref().map(|pem| public_key_from_pem(pem, &template)).transpose()?;
        let keys = JwtKeys {
            secret,
            hmac,
            public_key,
            jwks,
            issuer: Some(auth.issuer.clone()).filter(|s| !s.is_empty()),
            audience: Some(auth.audience.clone()).filter(|s| !s.is_empty()),
            verified: VerifiedTokens::new(auth.leeway_secs),
        };
        Ok((keys, generated))
    }

    /// A key for another purpose derived from the shared secret (HMAC-SHA256 of `label`), so
    /// one configured secret can sign download URLs without reusing the JWT key itself.
    /// None when tokens are verified with public keys only.
    pub fn derive_key(&self, label: &str) -> Option<Vec<u8>> {
        use hmac::{Hmac, Mac};
        let secret = self.secret.as_ref()?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).ok()?;
        mac.update(label.as_bytes());
        Some(mac.finalize().into_bytes().to_vec())
    }

    /// The claims of a token signed by one of the keys and valid now (within the leeway).
    /// A token checked before under the same keys skips the signature check.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        // Read before the check: see `VerifiedTokens::remember`.
        let generation = self.jwks.as_ref().map_or(0, JwksFile::generation);
        if let Some(claims) = self.verified.get(token, generation, jsonwebtoken::get_current_timestamp()) {
            return Some(claims);
        }
        let claims = self.check(token)?;
        self.verified.remember(token, &claims, generation);
        Some(claims)
    }

    /// The full check: header, key, signature and claims.
    fn check(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let family = header.alg.family();
        let jwks_key;
        let key = if family == AlgorithmFamily::Hmac {
            self.hmac.as_ref()?
        } else if let (Some(kid), Some(jwks)) = (&header.kid, &self.jwks) {
            jwks_key = jwks.key(kid)?;
            jwks_key.as_ref()
        } else {
            self.public_key.as_ref()?
        };
        if key.decoding.family() != family {
            return None;
        }
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation).ok().map(|data| data.claims)
    }

    /// A minter for HS256 tokens with the shared secret.
    pub fn minter(&self) -> anyhow::Result<Minter> {
        let Some(secret) = &self.secret else {
            bail!("tokens are verified with public keys here: pass the private key (--private-key)");
        };
        Ok(Minter {
            encoding: EncodingKey::from_secret(secret),
            header: Header::new(Algorithm::HS256),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
        })
    }

    /// Mints an HS256 token with the shared secret.
    pub fn mint(&self, subject: &str, role: Role, ttl: Duration) -> anyhow::Result<String> {
        self.minter()?.mint(subject, role, ttl)
    }
}

/// Signs tokens: with the shared secret, or with a private key (RS256/ES256 PEM) for
/// deployments that verify with the matching public key or JWKS.
pub struct Minter {
    encoding: EncodingKey,
    header: Header,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Minter {
    /// `kid` names the key in a JWKS file.
    pub fn from_private_pem(pem: &[u8], kid: Option<String>, settings: &Settings) -> anyhow::Result<Minter> {
        let (encoding, alg) = match EncodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, Algorithm::RS256),
            Err(_) => (
                EncodingKey::from_ec_pem(pem).context("the private key is neither an RSA nor a P-256 EC PEM key")?,
                Algorithm::ES256,
            ),
        };
        let mut header = Header::new(alg);
        header.kid = kid;
        Ok(Minter {
            encoding,
            header,
            issuer: Some(settings.auth.issuer.clone()).filter(|s| !s.is_empty()),
            audience: Some(settings.auth.audience.clone()).filter(|s| !s.is_empty()),
        })
    }

    pub fn mint(&self, subject: &str, role: Role, ttl: Duration) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            exp: now + ttl.as_secs(),
            iat: Some(now),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.encoding)?)
    }
}

/// Expiry and not-before always, issuer and audience when configured, `sub` required.
fn claim_rules(auth: &AuthSettings) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = auth.leeway_secs;
    validation.validate_nbf = true;
    // A configured issuer or audience is also a required claim: jsonwebtoken alone would
    // accept a token that leaves it out.
    let mut required = vec!["exp", "sub"];
    match auth.issuer.as_str() {
        "" => validation.iss = None,
        issuer => {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
    }
    match auth.audience.as_str() {
        "" => validation.validate_aud = false,
        audience => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn with_algorithms(template: &Validation, family: AlgorithmFamily) -> Validation {
    let mut validation = template.clone();
    validation.algorithms = family.algorithms().to_vec();
    validation
}

fn public_key_from_pem(pem: &[u8], template: &Validation) -> anyhow::Result<VerifyingKey> {
    let decoding = DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .context("the public key is not an RSA, EC or Ed25519 PEM public key")?;
    let validation = with_algorithms(template, decoding.family());
    Ok(VerifyingKey { decoding, validation })
}

/// The value itself, else the file's contents (trimmed of surrounding whitespace), else None.
fn secret_or_file(value: &str, file: &str, file_key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    if !value.is_empty() {
        return Ok(Some(value.trim().as_bytes().to_vec()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    let raw = std::fs::read_to_string(file).with_context(|| format!("reading {file_key} {file}"))?;
    Ok(Some(raw.trim().as_bytes().to_vec()))
}

fn dev_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().as_bytes().to_vec());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    write_private(path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    Ok(std::fs::write(path, contents)?)
}

/// `90s`, `15m`, `1h`, `7d`, or plain seconds.
pub fn parse_ttl(raw: &str) -> anyhow::Result<Duration> {
    let raw = raw.trim();
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let value: u64 = digits.parse().with_context(|| format!("invalid duration {raw:?}"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86400,
        _ => bail!("invalid duration unit in {raw:?}: use s, m, h or d"),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
