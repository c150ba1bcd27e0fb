//! Thin handlers: parse headers into domain types, authorize, hand work to sessions.

mod admin;
mod body;
pub mod browser;
pub mod download;
mod form;
mod headers;
mod health;
mod idempotency;
pub mod limits;
pub mod routes;
pub mod signed_url;
pub mod tus;
