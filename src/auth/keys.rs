use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{Claims, Role};
use crate::config::Settings;

const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// The HS256 key, resolved once at start-up.
pub struct JwtKeys {
    secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtKeys {
    /// Secret from `auth.jwt_secret`, else `auth.jwt_secret_file`, else (development only)
    /// a random secret kept in the data directory. Anything else refuses to start.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<(JwtKeys, Option<std::path::PathBuf>)> {
        let auth = &settings.auth;
        let (secret, generated) = if !auth.jwt_secret.is_empty() {
            (auth.jwt_secret.clone().into_bytes(), None)
        } else if !auth.jwt_secret_file.is_empty() {
            let raw = std::fs::read_to_string(&auth.jwt_secret_file)
                .with_context(|| format!("reading auth.jwt_secret_file {}", auth.jwt_secret_file))?;
            (raw.trim().as_bytes().to_vec(), None)
        } else if auth.generate_dev_secret {
            let path = settings.server.data_dir.join(DEV_SECRET_FILE);
            (dev_secret(&path)?, Some(path))
        } else {
            bail!(
                "no JWT key configured: set HOIST__AUTH__JWT_SECRET or HOIST__AUTH__JWT_SECRET_FILE \
                 (only the development profile generates one)"
            );
        };
        if secret.len() < 32 {
            bail!("the JWT secret must be at least 32 bytes");
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = auth.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let issuer = Some(auth.issuer.clone()).filter(|s| !s.is_empty());
        let audience = Some(auth.audience.clone()).filter(|s| !s.is_empty());
        match &issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let keys = JwtKeys {
            secret: secret.clone(),
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            issuer,
            audience,
        };
        Ok((keys, generated))
    }

    /// A key for another purpose derived from the secret (HMAC-SHA256 of `label`), so one
    /// configured secret can sign download URLs without reusing the JWT key itself.
    pub fn derive_key(&self, label: &str) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|data| data.claims)
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
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }
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
