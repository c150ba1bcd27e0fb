use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// Prometheus text format. Gauges that mirror live state are read at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String, description = "OK")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = &state.metrics;
    metrics.live_sessions.set(state.sessions.live_sessions() as i64);
    metrics.writes_in_flight.set(state.sessions.writes_in_flight() as i64);
    metrics.body_buffer_bytes.set(i64::try_from(state.sessions.deps().body_budget.held()).unwrap_or(i64::MAX));
    if let Some(open) = crate::fd_usage::open_descriptors() {
        metrics.open_fds.set(i64::try_from(open).unwrap_or(i64::MAX));
    }
    if let Some(limit) = crate::fd_usage::descriptor_limit() {
        metrics.max_fds.set(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    for (pool, in_use, idle) in state.repo.pool_states() {
        metrics.db_connections.with_label_values(&[pool, "in_use"]).set(i64::from(in_use));
        metrics.db_connections.with_label_values(&[pool, "idle"]).set(i64::from(idle));
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics.render())
}

/// The process answers.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Database reachable with migrations applied, store reachable, not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let database = state
        .repo
        .run(|conn| conn.has_pending_migrations().map_err(|e| crate::db::DbError::Unavailable(e.to_string())))
        .await;
    let database_ok = matches!(database, Ok(false));
    let store_ok = state.store.check().await.is_ok();
    let shutting_down = state.is_shutting_down();
    let body = json!({
        "database": if database_ok { "ok" } else { "unavailable" },
        "store": if store_ok { "ok" } else { "unavailable" },
        "shutting_down": shutting_down,
    });
    let ready = database_ok && store_ok && !shutting_down;
    state.metrics.ready.set(i64::from(ready));
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
