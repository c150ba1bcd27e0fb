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
pub mod openapi;
pub mod resumable;
pub mod routes;
pub mod signed_url;
pub mod tus;

pub use health::metrics as health_metrics;

use actix_web::{web, HttpRequest};

use crate::state::AppState;

/// Where clients reach this server: `server.public_url` if set, else the request's scheme
/// (https whenever Hoist terminates TLS itself) and Host.
pub fn base_url(req: &HttpRequest) -> String {
    let server = req.app_data::<web::Data<AppState>>().map(|state| &state.settings.server);
    if let Some(public) = server.map(|s| s.public_url.trim_end_matches('/')).filter(|url| !url.is_empty()) {
        return public.to_owned();
    }
    let info = req.connection_info();
    let scheme = if server.is_some_and(|s| s.tls.enabled()) { "https" } else { info.scheme() };
    format!("{scheme}://{}", info.host())
}
