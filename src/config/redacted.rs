//! `Debug` for the settings that hold secrets: they show whether a secret is set, never
//! its value, so a printed `Settings` cannot leak one into a log.

use super::{AuthSettings, DatabaseSettings, DownloadSettings, S3StoreSettings, SentrySettings};

/// What a secret setting prints as: whether it is set, never its value.
fn redacted(value: &str) -> &'static str {
    if value.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("DatabaseSettings")
            .field("url", &redacted(&self.url))
            .field("pool_size", &self.pool_size)
            .field("read_pool_size", &self.read_pool_size)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

impl std::fmt::Debug for S3StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3StoreSettings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("preferred_part_size", &self.preferred_part_size)
            .field("spool_dir", &self.spool_dir)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl std::fmt::Debug for DownloadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadSettings")
            .field("url_ttl_secs", &self.url_ttl_secs)
            .field("signing_key", &redacted(&self.signing_key))
            .field("signing_key_file", &self.signing_key_file)
            .finish()
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("public_key", &redacted(&self.public_key))
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("generate_dev_secret", &self.generate_dev_secret)
            .finish()
    }
}

impl std::fmt::Debug for SentrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentrySettings")
            .field("dsn", &redacted(&self.dsn))
            .field("environment", &self.environment)
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_output_names_secrets_but_never_prints_them() {
        let mut settings = crate::config::Settings::load(std::path::Path::new("config"), "test").expect("settings");
        settings.auth.jwt_secret = "jwt-secret-value-0123456789-0123456789".to_owned();
        settings.database.url = "postgres://hoist:db-password-value@db/hoist".to_owned();
        settings.store.s3.secret_access_key = "s3-secret-value".to_owned();
        settings.downloads.signing_key = "signing-key-value".to_owned();
        settings.sentry.dsn = "https://dsn-key-value@sentry.invalid/1".to_owned();
        let printed = format!("{settings:?}");
        for secret in ["jwt-secret-value", "db-password-value", "s3-secret-value", "signing-key-value", "dsn-key-value"]
        {
            assert!(!printed.contains(secret), "{secret} printed in {printed}");
        }
        assert!(printed.contains("jwt_secret: \"<redacted>\""), "{printed}");
    }
}
