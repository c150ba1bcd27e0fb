use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// The process answers.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Database reachable with migrations applied, store reachable, not shutting down.
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
    if database_ok && store_ok && !shutting_down {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
