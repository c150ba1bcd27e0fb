//! Tokens whose signature was checked already. A client sends the same bearer token with
//! every request of an upload; checking its signature each time was 39k of the 291k
//! instructions a small PATCH cost (callgrind), and on a HEAD a larger share still.
//!
//! Only tokens that passed every check are kept, under the exact token text. A hit still
//! has to be unexpired now (the expiry moves on, the cached verdict does not) and verified
//! under the key set in use now: a JWKS rotation that drops a key must lock its tokens out
//! at once, not when their entries age out.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::Claims;

/// Distinct tokens remembered: about 300 bytes each, so a few MiB at most.
const CAPACITY: u64 = 10_000;
/// Each token is checked in full again at least this often.
const REVERIFY_AFTER: Duration = Duration::from_secs(300);

struct Verified {
    claims: Claims,
    /// The JWKS key set it was verified under (0 without a JWKS file).
    generation: u64,
}

pub struct VerifiedTokens {
    cache: Cache<String, Arc<Verified>>,
    leeway_secs: u64,
}

impl VerifiedTokens {
    pub fn new(leeway_secs: u64) -> VerifiedTokens {
        VerifiedTokens {
            cache: Cache::builder().max_capacity(CAPACITY).time_to_live(REVERIFY_AFTER).build(),
            leeway_secs,
        }
    }

    /// The claims of `token` if it was verified under key set `generation` and has not
    /// expired by `now` (seconds since the epoch), with the same leeway as a full check.
    pub fn get(&self, token: &str, generation: u64, now: u64) -> Option<Claims> {
        let entry = self.cache.get(token)?;
        let unexpired = now <= entry.claims.exp.saturating_add(self.leeway_secs);
        (entry.generation == generation && unexpired).then(|| entry.claims.clone())
    }

    /// Remembers a token that passed every check under key set `generation` (read before
    /// the check began, so a rotation during the check leaves an entry that never hits).
    pub fn remember(&self, token: &str, claims: &Claims, generation: u64) {
        self.cache.insert(token.to_owned(), Arc::new(Verified { claims: claims.clone(), generation }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn claims(exp: u64) -> Claims {
        Claims { sub: "alice".into(), role: Role::Uploader, exp, iat: None, nbf: None, iss: None, aud: None }
    }

    #[test]
    fn a_remembered_token_is_served_until_it_expires_past_the_leeway() {
        let tokens = VerifiedTokens::new(5);
        tokens.remember("t", &claims(1000), 0);
        assert_eq!(tokens.get("t", 0, 900).map(|c| c.sub), Some("alice".to_owned()));
        assert!(tokens.get("t", 0, 1005).is_some(), "within the leeway");
        assert!(tokens.get("t", 0, 1006).is_none(), "expired past the leeway");
        assert!(tokens.get("other", 0, 900).is_none(), "never verified");
    }

    #[test]
    fn a_token_verified_under_an_older_key_set_is_not_served() {
        let tokens = VerifiedTokens::new(0);
        tokens.remember("t", &claims(1000), 3);
        assert!(tokens.get("t", 3, 900).is_some());
        assert!(tokens.get("t", 4, 900).is_none(), "the keys changed since");
    }
}
