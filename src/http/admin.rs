//! The admin API under `/admin/` (admin role only): list and inspect uploads, terminate,
//! extend expiry, stats and live sessions.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::Caller;
use crate::db::admin::{self, UploadFilter};
use crate::db::models::UploadRow;
use crate::db::uploads;
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::state::AppState;

/// A caller with the admin role; anyone else gets 403.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Admin, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            if caller.is_admin() {
                Ok(Admin)
            } else {
                Err(ApiError::Forbidden)
            }
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Lease {
    owner: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    fencing_token: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadView {
    id: String,
    owner: String,
    state: String,
    offset: i64,
    length: Option<i64>,
    metadata: String,
    concat: Option<String>,
    concat_parts: Option<String>,
    store_key: String,
    part_size: Option<i64>,
    multipart_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    lease: Lease,
}

impl From<&UploadRow> for UploadView {
    fn from(row: &UploadRow) -> Self {
        UploadView {
            id: row.id.clone(),
            owner: row.owner.clone(),
            state: row.state.clone(),
            offset: row.upload_offset,
            length: row.upload_length,
            metadata: row.metadata.clone(),
            concat: row.concat_kind.clone(),
            concat_parts: row.concat_parts.clone(),
            store_key: row.store_key.clone(),
            part_size: row.part_size,
            multipart_id: row.multipart_id.clone(),
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            expires_at: row.expires_at.map(|t| t.and_utc()),
            completed_at: row.completed_at.map(|t| t.and_utc()),
            lease: Lease {
                owner: row.lease_owner.clone(),
                expires_at: row.lease_expires_at.map(|t| t.and_utc()),
                fencing_token: row.lease_token,
            },
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    owner: Option<String>,
    #[param(pattern = "^(open|complete|terminated|expired)$")]
    state: Option<String>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    min_size: Option<i64>,
    max_size: Option<i64>,
    /// Page size, clamped to 1..=1000; 100 if absent.
    limit: Option<i64>,
    /// `next_cursor` of the previous page; empty or absent for the first.
    cursor: Option<String>,
}

fn encode_cursor(row: &UploadRow) -> String {
    let raw = format!("{}.{}", row.created_at.and_utc().timestamp_micros(), row.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Result<(NaiveDateTime, String), ApiError> {
    let invalid = || ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (micros, id) = raw.split_once('.').ok_or_else(invalid)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| invalid())?).ok_or_else(invalid)?;
    Ok((at.naive_utc(), UploadId::parse(id).map_err(|_| invalid())?.to_string()))
}

/// A page of uploads; `next_cursor` fetches the next one.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadPage {
    uploads: Vec<UploadView>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Part {
    number: i32,
    size: i64,
    etag: String,
}

/// One upload; `parts` and `session_live_here` only from `GET /admin/uploads/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadDetail {
    upload: UploadView,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<Part>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_live_here: Option<bool>,
}

const STATES: [&str; 4] = ["open", "complete", "terminated", "expired"];

/// Uploads, newest first, filtered and keyset-paged.
#[utoipa::path(get, path = "/admin/uploads", tag = "admin", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = UploadPage, description = "OK"), (status = 400, body = crate::error::ErrorBody, description = "Bad request (stable error code)"), (status = 403, body = crate::error::ErrorBody, description = "Forbidden")))]
pub async fn list(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let Some(s) = query.state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ApiError::bad_request("invalid_state", format!("state {s:?} is not one of {STATES:?}")));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let filter = UploadFilter {
        owner: query.owner,
        state: query.state,
        created_after: query.created_after.map(|t| t.naive_utc()),
        created_before: query.created_before.map(|t| t.naive_utc()),
        min_size: query.min_size,
        max_size: query.max_size,
        // `cursor=` (a client echoing an absent next_cursor) asks for the first page.
        after: query.cursor.as_deref().filter(|cursor| !cursor.is_empty()).map(decode_cursor).transpose()?,
        limit: limit + 1,
    };
    let mut rows = state.repo.read(move |conn| admin::list_uploads(conn, &filter)).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(encode_cursor)
    } else {
        None
    };
    let uploads: Vec<UploadView> = rows.iter().map(UploadView::from).collect();
    Ok(HttpResponse::Ok().json(UploadPage { uploads, next_cursor }))
}

/// One upload's whole state, with its S3 parts.
#[utoipa::path(get, path = "/admin/uploads/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = UploadDetail, description = "OK"), (status = 404, body = crate::error::ErrorBody, description = "No such upload (or someone else's)")))]
pub async fn show(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(&path)?;
    let key = id.to_string();
    let (row, parts) = state
        .repo
        .read(move |conn| {
            let row = uploads::find(conn, &key)?;
            let parts = uploads::list_parts(conn, &key)?;
            Ok((row, parts))
        })
        .await?;
    let row = row.ok_or(ApiError::NotFound)?;
    let parts = parts.into_iter().map(|(number, size, etag)| Part { number, size, etag }).collect();
    Ok(HttpResponse::Ok().json(UploadDetail {
        upload: UploadView::from(&row),
        parts: Some(parts),
        session_live_here: Some(state.sessions.is_live(&id)),
    }))
}

/// Terminates any upload, cutting a request still streaming into it.
#[utoipa::path(delete, path = "/admin/uploads/{id}", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Terminated"), (status = 404, body = crate::error::ErrorBody, description = "No such upload (or someone else's)"), (status = 410, body = crate::error::ErrorBody, description = "Expired or terminated"),
        (status = 423, body = crate::error::ErrorBody, description = "upload_locked: a request still writes it (on a node that did not let it go, or with uploads.cut_abandoned_requests off)")))]
pub async fn terminate(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(&path)?;
    let row = state.load_upload(&id).await?;
    crate::http::tus::ensure_live(&row)?;
    // As the owner's termination does: a body still streaming in is cut, not waited for.
    state.sessions.interrupt(&id, &row).await;
    state.sessions.terminate(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpiryBody {
    expires_at: DateTime<Utc>,
}

/// Sets the expiry of an unfinished upload.
#[utoipa::path(put, path = "/admin/uploads/{id}/expiry", tag = "admin", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = ExpiryBody,
    responses((status = 200, body = UploadDetail, description = "OK"), (status = 409, body = crate::error::ErrorBody, description = "upload_not_open: already complete"), (status = 404, body = crate::error::ErrorBody, description = "No such upload (or someone else's)"),
        (status = 410, body = crate::error::ErrorBody, description = "Expired or terminated")))]
pub async fn set_expiry(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<String>,
    body: web::Json<ExpiryBody>,
) -> Result<HttpResponse, ApiError> {
    let id = UploadId::parse(&path)?;
    let (key, at) = (id.to_string(), body.expires_at.naive_utc());
    let updated = state.repo.run(move |conn| admin::set_expiry(conn, &key, at)).await?;
    if !updated {
        let row = state.load_upload(&id).await?;
        crate::http::tus::ensure_live(&row)?;
        return Err(ApiError::Conflict { code: "upload_not_open", message: "only unfinished uploads expire".into() });
    }
    // The session (if any) caches the row; drop it so the next request reads the new expiry.
    state.cache.invalidate(id.as_str());
    let key = id.to_string();
    let row = state.repo.read(move |conn| uploads::find(conn, &key)).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(UploadDetail { upload: UploadView::from(&row), parts: None, session_live_here: None }))
}

/// Uploads and bytes by state, live sessions, writes in flight.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("bearer" = [])), responses((status = 200, body = Object, description = "OK")))]
pub async fn stats(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let totals = state.repo.read(admin::totals_by_state).await?;
    let by_state: serde_json::Map<String, serde_json::Value> =
        totals.into_iter().map(|(s, n, bytes)| (s, json!({"uploads": n, "bytes": bytes}))).collect();
    Ok(HttpResponse::Ok().json(json!({
        "by_state": by_state,
        "live_sessions": state.sessions.live_sessions(),
        "writes_in_flight": state.sessions.writes_in_flight(),
    })))
}

/// The upload sessions alive in this process.
#[utoipa::path(get, path = "/admin/sessions", tag = "admin", security(("bearer" = [])), responses((status = 200, body = Object, description = "OK")))]
pub async fn sessions(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "sessions": state.sessions.live_ids() }))
}
