//! Settings that hold secrets. Their `Debug` shows whether a secret is set, never its value,
//! so a printed `Settings` cannot leak one into a log; the structs holding them derive
//! `Debug` like every other.

use serde::Deserialize;

/// A secret setting (a key, a password-bearing URL, a DSN): deserialized from a plain
/// string, read with [`Secret::expose`].
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_output_names_secrets_but_never_prints_them() {
        let mut settings = crate::config::Settings::load(std::path::Path::new("config"), "test").expect("settings");
        settings.auth.jwt_secret = "jwt-secret-value-0123456789-0123456789".into();
        settings.database.url = "postgres://hoist:db-password-value@db/hoist".into();
        settings.store.s3.secret_access_key = "s3-secret-value".into();
        settings.downloads.signing_key = "signing-key-value".into();
        settings.sentry.dsn = "https://dsn-key-value@sentry.invalid/1".into();
        let printed = format!("{settings:?}");
        for secret in ["jwt-secret-value", "db-password-value", "s3-secret-value", "signing-key-value", "dsn-key-value"]
        {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        assert!(printed.contains("jwt_secret: \"<redacted>\""), "{printed}");
    }
}
