use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::{expires_header, location, require_tus, OFFSET_OCTET_STREAM};
use crate::auth::Caller;
use crate::db::models::{StoredResponse, UploadRow, UploadState, CONCAT_FINAL, CONCAT_PARTIAL};
use crate::db::uploads;
use crate::domain::{metadata::MetadataLimits, Checksum};
use crate::domain::{parse_upload_concat, Metadata, UploadConcat, UploadId};
use crate::error::ApiError;
use crate::http::body::append_body;
use crate::http::headers;
use crate::http::idempotency::idempotent;
use crate::session::AppendSpec;
use crate::state::AppState;

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    caller: Caller,
    payload: web::Payload,
) -> HttpResponse {
    idempotent(&state, &req, &caller, || {
        run(&state, &req, &caller, payload)
    })
    .await
}

/// What a creation request asks for.
struct Creation {
    length: Option<u64>,
    metadata: Metadata,
    concat: Option<UploadConcat>,
}

fn parse(state: &AppState, req: &HttpRequest) -> Result<Creation, ApiError> {
    let limits = &state.settings.uploads;
    let concat = headers::optional(req, "Upload-Concat")?
        .map(|raw| parse_upload_concat(raw, limits.max_concat_parts))
        .transpose()?;
    let length = headers::optional_number(req, "Upload-Length")?;
    let deferred = match headers::optional(req, "Upload-Defer-Length")? {
        None => false,
        Some("1") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_defer_length",
                "Upload-Defer-Length must be 1",
            ))
        }
    };
    let is_final = matches!(concat, Some(UploadConcat::Final(_)));
    match (length, deferred, is_final) {
        (Some(_), true, _) => {
            return Err(ApiError::bad_request(
                "invalid_length",
                "send Upload-Length or Upload-Defer-Length, not both",
            ))
        }
        (None, false, false) => {
            return Err(ApiError::bad_request(
                "missing_length",
                "Upload-Length or Upload-Defer-Length: 1 is required",
            ))
        }
        (Some(_), _, true) | (_, true, true) => {
            return Err(ApiError::bad_request(
                "invalid_length",
                "a final upload's length is the sum of its parts",
            ))
        }
        _ => {}
    }
    if let Some(length) = length.filter(|l| *l > limits.max_size) {
        return Err(ApiError::TooLarge {
            code: "upload_too_large",
            message: format!(
                "Upload-Length {length} exceeds Tus-Max-Size {}",
                limits.max_size
            ),
        });
    }
    let metadata = match headers::optional(req, "Upload-Metadata")? {
        Some(raw) => Metadata::parse(
            raw,
            &MetadataLimits {
                max_bytes: limits.max_metadata_bytes,
                max_keys: limits.max_metadata_keys,
            },
        )?,
        None => Metadata::default(),
    };
    Ok(Creation {
        length,
        metadata,
        concat,
    })
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    payload: web::Payload,
) -> Result<StoredResponse, ApiError> {
    require_tus(req)?;
    let creation = parse(state, req)?;
    if let Some(UploadConcat::Final(parts)) = &creation.concat {
        let row = concatenate(state, caller, parts, creation.metadata.raw()).await?;
        return Ok(created(req, &row));
    }
    // creation-with-upload: a body of the tus media type is the first chunk.
    let with_body = headers::content_type(req)?.as_deref() == Some(OFFSET_OCTET_STREAM);
    let first_chunk = if with_body {
        Some(AppendSpec {
            expected_offset: 0,
            declare_length: None,
            checksum: headers::optional(req, "Upload-Checksum")?
                .map(Checksum::parse)
                .transpose()?,
            content_length: headers::content_length(req)?,
        })
    } else {
        None
    };

    let id = UploadId::new_random();
    let now = Utc::now();
    let lifetime = chrono::Duration::from_std(state.settings.upload_lifetime())
        .unwrap_or(chrono::Duration::days(1));
    let empty = creation.length == Some(0);
    let row = UploadRow {
        id: id.to_string(),
        owner: caller.subject.clone(),
        state: if empty {
            UploadState::Complete
        } else {
            UploadState::Open
        }
        .as_str()
        .to_owned(),
        upload_length: creation.length.map(|l| l as i64),
        upload_offset: 0,
        metadata: creation.metadata.raw().to_owned(),
        concat_kind: matches!(creation.concat, Some(UploadConcat::Partial))
            .then(|| CONCAT_PARTIAL.to_owned()),
        concat_parts: None,
        store_key: id.to_string(),
        part_size: None,
        created_at: now.naive_utc(),
        updated_at: now.naive_utc(),
        expires_at: (!empty).then(|| (now + lifetime).naive_utc()),
        completed_at: empty.then(|| now.naive_utc()),
        lease_owner: None,
        lease_expires_at: None,
        lease_token: 0,
    };
    // The object first: a row never points at bytes that do not exist.
    state.store.create(&row.store_key).await?;
    let insert = row.clone();
    state
        .repo
        .run(move |conn| uploads::insert(conn, &insert))
        .await?;

    let row = match first_chunk {
        Some(spec) => append_body(state, &id, spec, payload).await?,
        None => row,
    };
    Ok(created(req, &row))
}

fn created(req: &HttpRequest, row: &UploadRow) -> StoredResponse {
    let mut headers = vec![
        ("Location".to_owned(), location(req, &row.id)),
        ("Upload-Offset".to_owned(), row.offset().to_string()),
    ];
    headers.extend(expires_header(row));
    StoredResponse {
        status: 201,
        headers,
        body: Vec::new(),
    }
}

/// A final upload: the partials' bytes joined, in order, into a new complete upload.
async fn concatenate(
    state: &AppState,
    caller: &Caller,
    parts: &[UploadId],
    metadata: &str,
) -> Result<UploadRow, ApiError> {
    let ids: Vec<String> = parts.iter().map(ToString::to_string).collect();
    let lookup = ids.clone();
    let found = state
        .repo
        .run(move |conn| uploads::find_many(conn, &lookup))
        .await?;
    let mut sources = Vec::with_capacity(ids.len());
    let mut total: u64 = 0;
    for id in &ids {
        let row = found
            .iter()
            .find(|row| &row.id == id)
            .ok_or(ApiError::NotFound)?;
        caller.check_owner(row)?;
        if !row.is_partial_concat() {
            return Err(ApiError::bad_request(
                "not_a_partial_upload",
                format!("upload {id} was not created as partial"),
            ));
        }
        if row.state() != UploadState::Complete {
            return Err(ApiError::bad_request(
                "partial_upload_incomplete",
                format!("partial upload {id} is not complete"),
            ));
        }
        total += row.offset();
        sources.push(row.store_key.clone());
    }
    if total > state.settings.uploads.max_size {
        return Err(ApiError::TooLarge {
            code: "upload_too_large",
            message: "the concatenation exceeds Tus-Max-Size".into(),
        });
    }
    let id = UploadId::new_random();
    let written = state.store.concatenate(sources, id.as_str()).await?;
    let now = Utc::now().naive_utc();
    let row = UploadRow {
        id: id.to_string(),
        owner: caller.subject.clone(),
        state: UploadState::Complete.as_str().to_owned(),
        upload_length: Some(written as i64),
        upload_offset: written as i64,
        metadata: metadata.to_owned(),
        concat_kind: Some(CONCAT_FINAL.to_owned()),
        concat_parts: Some(ids.join(" ")),
        store_key: id.to_string(),
        part_size: None,
        created_at: now,
        updated_at: now,
        expires_at: None,
        completed_at: Some(now),
        lease_owner: None,
        lease_expires_at: None,
        lease_token: 0,
    };
    let insert = row.clone();
    state
        .repo
        .run(move |conn| uploads::insert(conn, &insert))
        .await?;
    Ok(row)
}
