//! API tests against the real server, each on SQLite and on PostgreSQL.

mod helpers;

mod binary;
mod certificate;

mod admin;
mod auth;
mod browser;
mod clients;
mod concatenation;
mod crash;
mod deploy;
mod descriptors;
mod expiry;
mod form;
mod hostile;
mod idempotency;
mod jwt_keys;
mod limits;
mod logs;
mod openapi;
mod reconcile;
mod replicas;
mod resumable;
mod s3;
mod schemathesis;
mod sentry;
mod sessions;
mod tls;
mod transport;
mod tus_core;
