//! Public-key JWTs (RS256/ES256 PEM, JWKS by `kid` with rotation) and the claim checks
//! (issuer, audience, expiry and not-before within the leeway). Keys are made by openssl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hoist::auth::{Minter, Role};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings, Backend, TestApp, TEST_SECRET};

const HOUR: Duration = Duration::from_secs(3600);

fn openssl(args: &[&str]) {
    let status = Command::new("openssl").args(args).status().expect("openssl runs (scripts/install-test-deps)");
    assert!(status.success(), "openssl {args:?}");
}

/// A private key and its public half, as PEM files in `dir`.
fn key_pair(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let private_s = private.to_str().unwrap();
    match kind {
        "rsa" => openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", private_s]),
        "ec" => openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", private_s]),
        other => panic!("no key kind {other}"),
    }
    openssl(&["pkey", "-in", private_s, "-pubout", "-out", public.to_str().unwrap()]);
    (private, public)
}

async fn spawn_verifying_with(tweak: impl FnOnce(&mut hoist::config::Settings)) -> TestApp {
    spawn_app_with(Backend::Sqlite, |settings| {
        settings.auth.jwt_secret = Default::default();
        settings.downloads.signing_key = "download-signing-key-for-tests-0123456789".into();
        tweak(settings);
    })
    .await
}

fn minter(private: &Path, kid: Option<&str>, settings: &hoist::config::Settings) -> Minter {
    Minter::from_private_pem(&std::fs::read(private).unwrap(), kid.map(str::to_owned), settings).expect("minter")
}

async fn create_status(app: &TestApp, token: &str) -> u16 {
    let response =
        app.tus_as(token, Method::POST, &app.files_url()).header("Upload-Length", "3").send().await.expect("POST");
    response.status().as_u16()
}

fn jwks(keys: &[(&Path, &str, Algorithm)]) -> String {
    let keys = keys
        .iter()
        .map(|(private, kid, alg)| {
            let pem = std::fs::read(private).unwrap();
            let encoding = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
                _ => EncodingKey::from_ec_pem(&pem).unwrap(),
            };
            let mut jwk = Jwk::from_encoding_key(&encoding, *alg).expect("jwk");
            jwk.common.key_id = Some(kid.to_string());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

#[actix_rt::test]
async fn rs256_and_es256_public_keys_verify_their_own_tokens_only() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa_private, rsa_public) = key_pair(dir.path(), "rsa", "rsa");
    let (other_private, _) = key_pair(dir.path(), "other", "rsa");
    let (ec_private, ec_public) = key_pair(dir.path(), "ec", "ec");

    let rsa_app = spawn_verifying_with(|s| s.auth.public_key_file = rsa_public.to_str().unwrap().to_owned()).await;
    let good = minter(&rsa_private, None, &rsa_app.settings).mint("alice", Role::Uploader, HOUR).unwrap();
    assert_eq!(create_status(&rsa_app, &good).await, 201);
    let wrong_key = minter(&other_private, None, &rsa_app.settings).mint("alice", Role::Uploader, HOUR).unwrap();
    assert_eq!(create_status(&rsa_app, &wrong_key).await, 401);
    // Algorithm confusion: an HS256 token "signed" with the public key as the HMAC secret.
    let public_pem = std::fs::read(&rsa_public).unwrap();
    let claims = json!({"sub": "alice", "role": "uploader", "exp": now() + 3600});
    let confused =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&public_pem)).unwrap();
    assert_eq!(create_status(&rsa_app, &confused).await, 401);
    // An unsigned token.
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&claims));
    assert_eq!(create_status(&rsa_app, &unsigned).await, 401);

    let ec_app = spawn_verifying_with(|s| s.auth.public_key = std::fs::read_to_string(&ec_public).unwrap()).await;
    let ec_token = minter(&ec_private, None, &ec_app.settings).mint("carol", Role::Admin, HOUR).unwrap();
    assert_eq!(create_status(&ec_app, &ec_token).await, 201);
    let admin_stats = ec_app.client.get(format!("{}/admin/stats", ec_app.address)).bearer_auth(&ec_token);
    assert_eq!(admin_stats.send().await.unwrap().status(), 200);
    assert_eq!(create_status(&ec_app, &good).await, 401, "an RSA token against the EC key");
}

#[actix_rt::test]
async fn jwks_keys_are_chosen_by_kid_and_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = key_pair(dir.path(), "first", "rsa");
    let (second, _) = key_pair(dir.path(), "second", "ec");
    let (third, _) = key_pair(dir.path(), "third", "rsa");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[(&first, "k1", Algorithm::RS256), (&second, "k2", Algorithm::ES256)])).unwrap();
    let app = spawn_verifying_with(|s| s.auth.jwks_file = jwks_path.to_str().unwrap().to_owned()).await;

    let token = |private: &Path, kid: Option<&str>| {
        minter(private, kid, &app.settings).mint("alice", Role::Uploader, HOUR).unwrap()
    };
    // Used before and after the rotation: verified once, it must not outlive its key.
    let k1_token = token(&first, Some("k1"));
    assert_eq!(create_status(&app, &k1_token).await, 201);
    assert_eq!(create_status(&app, &k1_token).await, 201, "the same token again");
    assert_eq!(create_status(&app, &token(&second, Some("k2"))).await, 201);
    assert_eq!(create_status(&app, &token(&first, Some("k2"))).await, 401, "signed by k1, claims k2");
    assert_eq!(create_status(&app, &token(&third, Some("k3"))).await, 401, "not published yet");
    assert_eq!(create_status(&app, &token(&first, None)).await, 401, "no kid");

    // Rotation: publish k3, drop k1. The file is re-read within a few seconds.
    std::fs::write(&jwks_path, jwks(&[(&second, "k2", Algorithm::ES256), (&third, "k3", Algorithm::RS256)])).unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        if create_status(&app, &token(&third, Some("k3"))).await == 201 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rotated, "the new key was never accepted");
    assert_eq!(create_status(&app, &token(&first, Some("k1"))).await, 401, "the retired key still works");
    assert_eq!(create_status(&app, &k1_token).await, 401, "a token verified under the retired key still works");
    assert_eq!(create_status(&app, &token(&second, Some("k2"))).await, 201);

    // A broken file keeps the keys last read.
    std::fs::write(&jwks_path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(create_status(&app, &token(&third, Some("k3"))).await, 201);
}

#[actix_rt::test]
async fn hoist_token_signs_with_a_private_key_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = key_pair(dir.path(), "signer", "ec");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, jwks(&[(&private, "signer-2026", Algorithm::ES256)])).unwrap();
    let app = spawn_verifying_with(|s| s.auth.jwks_file = jwks_path.to_str().unwrap().to_owned()).await;
    let output = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["--config-dir", "config", "token", "--sub", "dave", "--role", "admin", "--ttl", "10m"])
        .arg("--private-key")
        .arg(&private)
        .args(["--kid", "signer-2026"])
        .env("HOIST_ENV", "test")
        .env("HOIST__AUTH__JWKS_FILE", &jwks_path)
        .output()
        .expect("hoist token runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.lines().last().expect("a token line").trim();
    let stats = app.client.get(format!("{}/admin/stats", app.address)).bearer_auth(token).send().await.unwrap();
    assert_eq!(stats.status(), 200);
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[actix_rt::test]
async fn issuer_audience_expiry_and_not_before_are_checked_within_the_leeway() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.issuer = "https://id.example.test".to_owned();
        s.auth.audience = "hoist".to_owned();
        s.auth.leeway_secs = 30;
    })
    .await;
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(TEST_SECRET.as_bytes()))
            .unwrap()
    };
    let claims = |iss: &str, aud: &str, exp: i64, nbf: Option<i64>| {
        let mut claims = json!({"sub": "alice", "role": "uploader", "iss": iss, "aud": aud, "exp": exp});
        if let Some(nbf) = nbf {
            claims["nbf"] = json!(nbf);
        }
        sign(claims)
    };
    let (iss, aud) = ("https://id.example.test", "hoist");
    assert_eq!(create_status(&app, &claims(iss, aud, now() + 600, None)).await, 201);
    assert_eq!(create_status(&app, &claims("https://evil.test", aud, now() + 600, None)).await, 401);
    assert_eq!(create_status(&app, &claims(iss, "another-api", now() + 600, None)).await, 401);
    let no_audience = sign(json!({"sub": "alice", "role": "uploader", "iss": iss, "exp": now() + 600}));
    assert_eq!(create_status(&app, &no_audience).await, 401);
    let no_issuer = sign(json!({"sub": "alice", "role": "uploader", "aud": aud, "exp": now() + 600}));
    assert_eq!(create_status(&app, &no_issuer).await, 401);
    let no_subject = sign(json!({"role": "uploader", "iss": iss, "aud": aud, "exp": now() + 600}));
    assert_eq!(create_status(&app, &no_subject).await, 401);
    let unknown_role = sign(json!({"sub": "alice", "role": "root", "iss": iss, "aud": aud, "exp": now() + 600}));
    assert_eq!(create_status(&app, &unknown_role).await, 401);
    // Expiry and not-before, each side of the 30 s leeway.
    assert_eq!(create_status(&app, &claims(iss, aud, now() - 10, None)).await, 201);
    assert_eq!(create_status(&app, &claims(iss, aud, now() - 120, None)).await, 401);
    assert_eq!(create_status(&app, &claims(iss, aud, now() + 600, Some(now() + 10))).await, 201);
    assert_eq!(create_status(&app, &claims(iss, aud, now() + 600, Some(now() + 120))).await, 401);
}

#[actix_rt::test]
async fn a_public_key_only_server_needs_a_download_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key_pair(dir.path(), "rsa", "rsa");
    let (mut settings, _data_dir, _pg) = test_settings(Backend::Sqlite).await;
    settings.auth.jwt_secret = Default::default();
    settings.auth.public_key_file = public.to_str().unwrap().to_owned();
    let log = hoist::telemetry::build_logger(&settings.log).unwrap();
    let error = match hoist::startup::Application::build(settings, log).await {
        Ok(_) => panic!("started without a download signing key"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("SIGNING_KEY"), "{error}");
}
