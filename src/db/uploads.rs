//! Queries on `uploads`. Progress only ever moves by compare-and-set on the offset and the
//! lease's fencing token, so two processes can never both advance one upload.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use super::models::{UploadRow, UploadState};
use super::offset_update::AdvanceOpenUpload;
use super::schema::parts::dsl as p;
use super::schema::uploads::dsl as u;
use super::{on_backend, DbConnection, DbError};

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

pub fn insert(conn: &mut DbConnection, row: &UploadRow) -> Result<(), DbError> {
    diesel::insert_into(u::uploads).values(row).execute(conn)?;
    Ok(())
}

/// The upload with this id.
///
/// `get_result`, not `first`: a primary key matches one row at most, and `first` adds a bound
/// `LIMIT ?` that makes SQLite re-compile the cached statement on every call (a LIMIT bound
/// to a parameter marks it as depending on the bound value): 4.6 % of the server's CPU in
/// the 64 KiB PATCH profile.
pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<UploadRow>, DbError> {
    Ok(on_backend!(conn, |c| u::uploads.find(id).select(UploadRow::as_select()).get_result(c).optional())?)
}

pub fn find_many(conn: &mut DbConnection, ids: &[String]) -> Result<Vec<UploadRow>, DbError> {
    Ok(u::uploads.filter(u::id.eq_any(ids)).select(UploadRow::as_select()).load(conn)?)
}

/// For each of the owner's open uploads, the bytes declared but not yet received (0 while
/// the length is deferred); at most `limit` of them.
pub fn open_remaining(conn: &mut DbConnection, owner: &str, limit: Option<i64>) -> Result<Vec<u64>, DbError> {
    let query = u::uploads
        .filter(u::owner.eq(owner))
        .filter(u::state.eq(UploadState::Open.as_str()))
        .select((u::upload_length, u::upload_offset));
    let rows: Vec<(Option<i64>, i64)> = match limit {
        Some(limit) => query.limit(limit).load(conn)?,
        None => query.load(conn)?,
    };
    Ok(rows.into_iter().map(|(length, offset)| length.map_or(0, |l| l.saturating_sub(offset).max(0) as u64)).collect())
}

pub enum LeaseOutcome {
    Acquired(Box<UploadRow>),
    HeldElsewhere,
    NotFound,
}

/// Takes (or renews) the write lease on an upload for `node` until `until`, bumping the
/// fencing token. Succeeds only if the lease is free, lapsed, or already this node's.
pub fn acquire_lease(
    conn: &mut DbConnection,
    id: &str,
    node: &str,
    until: NaiveDateTime,
) -> Result<LeaseOutcome, DbError> {
    let now = now();
    let updated = diesel::update(
        u::uploads
            .filter(u::id.eq(id))
            .filter(u::lease_owner.is_null().or(u::lease_owner.eq(node)).or(u::lease_expires_at.lt(now))),
    )
    .set((u::lease_owner.eq(node), u::lease_expires_at.eq(until), u::lease_token.eq(u::lease_token + 1)))
    .execute(conn)?;
    match (updated, find(conn, id)?) {
        (1, Some(row)) => Ok(LeaseOutcome::Acquired(Box::new(row))),
        (_, Some(_)) => Ok(LeaseOutcome::HeldElsewhere),
        (_, None) => Ok(LeaseOutcome::NotFound),
    }
}

/// Extends a held lease; false if it was lost (another node fenced us out).
pub fn renew_lease(conn: &mut DbConnection, id: &str, token: i64, until: NaiveDateTime) -> Result<bool, DbError> {
    let updated = diesel::update(u::uploads.filter(u::id.eq(id)).filter(u::lease_token.eq(token)))
        .set(u::lease_expires_at.eq(until))
        .execute(conn)?;
    Ok(updated == 1)
}

pub fn release_lease(conn: &mut DbConnection, id: &str, token: i64) -> Result<(), DbError> {
    diesel::update(u::uploads.filter(u::id.eq(id)).filter(u::lease_token.eq(token)))
        .set((u::lease_owner.eq(None::<String>), u::lease_expires_at.eq(None::<NaiveDateTime>)))
        .execute(conn)?;
    Ok(())
}

/// What a successful write changes.
#[derive(Debug, Clone)]
pub struct Progress {
    pub from_offset: u64,
    pub to_offset: u64,
    /// Set when a deferred length is declared by this request.
    pub declare_length: Option<u64>,
    pub complete: bool,
    pub lease_until: NaiveDateTime,
    /// S3 parts uploaded by this write: (number, size, ETag).
    pub new_parts: Vec<(i32, i64, String)>,
}

/// Advances the offset by compare-and-set: the row must still be open, at `from_offset`,
/// and leased under `token`; the new parts are recorded in the same transaction. Returns
/// the new row, or None if any of those changed. `admitted` is the row the append was
/// admitted with (the session's copy); the common case builds the new row from it.
///
/// With no part to record (every disk append, most S3 ones) the one UPDATE is atomic on its
/// own and needs no transaction around it: that saves the BEGIN and COMMIT statements, which
/// SQLite parses afresh each time (7 % of the server's CPU in the 64 KiB PATCH profile) and
/// PostgreSQL answers with two more round trips.
pub fn commit_progress(
    conn: &mut DbConnection,
    admitted: &UploadRow,
    token: i64,
    progress: &Progress,
) -> Result<Option<UploadRow>, DbError> {
    if progress.new_parts.is_empty() {
        return advance(conn, admitted, token, progress);
    }
    let id = admitted.id.as_str();
    conn.transaction(|conn| {
        let Some(row) = advance(conn, admitted, token, progress)? else { return Ok(None) };
        for (number, size, etag) in &progress.new_parts {
            diesel::delete(p::parts.filter(p::upload_id.eq(id)).filter(p::part_number.eq(number))).execute(conn)?;
            insert_part(conn, id, *number, *size, etag)?;
        }
        Ok(Some(row))
    })
}

/// Records one S3 part of an upload.
pub fn insert_part(conn: &mut DbConnection, id: &str, number: i32, size: i64, etag: &str) -> Result<(), DbError> {
    diesel::insert_into(p::parts)
        .values((
            p::upload_id.eq(id),
            p::part_number.eq(number),
            p::size.eq(size),
            p::etag.eq(etag),
            p::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The recorded S3 parts of an upload, in order: (number, size, ETag).
pub fn list_parts(conn: &mut DbConnection, id: &str) -> Result<Vec<(i32, i64, String)>, DbError> {
    Ok(p::parts
        .filter(p::upload_id.eq(id))
        .order(p::part_number.asc())
        .select((p::part_number, p::size, p::etag))
        .load(conn)?)
}

fn advance(
    conn: &mut DbConnection,
    admitted: &UploadRow,
    token: i64,
    progress: &Progress,
) -> Result<Option<UploadRow>, DbError> {
    let now = now();
    let id = admitted.id.as_str();
    let (Ok(from), Ok(to)) = (i64::try_from(progress.from_offset), i64::try_from(progress.to_offset)) else {
        return Ok(None);
    };
    let target = u::uploads
        .filter(u::id.eq(id))
        .filter(u::lease_token.eq(token))
        .filter(u::upload_offset.eq(from))
        .filter(u::state.eq(UploadState::Open.as_str()));
    let state = if progress.complete { UploadState::Complete } else { UploadState::Open };
    let completed_at = progress.complete.then_some(now);
    let updated = match progress.declare_length.map(i64::try_from) {
        // The common case: a statement each connection keeps prepared, setting only what
        // changes and returning what the session's copy cannot know (see `offset_update`).
        // Everything else in the row is fixed while this lease is held, or (state, lease)
        // part of the compare-and-set.
        None if !progress.complete => {
            let update = AdvanceOpenUpload {
                id,
                token,
                from,
                to,
                now,
                lease_until: progress.lease_until,
                open: UploadState::Open.as_str(),
            };
            let changed: Option<(NaiveDateTime, Option<NaiveDateTime>, Option<NaiveDateTime>)> =
                on_backend!(conn, |c| update.get_result(c).optional())?;
            return Ok(changed.map(|(updated_at, lease_expires_at, expires_at)| UploadRow {
                upload_offset: to,
                updated_at,
                lease_expires_at,
                expires_at,
                ..admitted.clone()
            }));
        }
        Some(Ok(length)) => diesel::update(target.filter(u::upload_length.is_null()))
            .set((
                u::upload_offset.eq(to),
                u::upload_length.eq(Some(length)),
                u::state.eq(state.as_str()),
                u::completed_at.eq(completed_at),
                u::updated_at.eq(now),
                u::lease_expires_at.eq(progress.lease_until),
            ))
            .execute(conn)?,
        Some(Err(_)) => 0,
        None => diesel::update(target)
            .set((
                u::upload_offset.eq(to),
                u::state.eq(state.as_str()),
                u::completed_at.eq(completed_at),
                u::updated_at.eq(now),
                u::lease_expires_at.eq(progress.lease_until),
            ))
            .execute(conn)?,
    };
    // Once per upload (its length declared, or its completion): read the row as stored.
    if updated == 1 {
        find(conn, id)
    } else {
        Ok(None)
    }
}

/// Marks an upload terminated (a tombstone that answers 410). Returns the row as it was.
pub fn terminate(conn: &mut DbConnection, id: &str) -> Result<Option<UploadRow>, DbError> {
    conn.transaction(|conn| {
        let Some(row) = find(conn, id)? else {
            return Ok(None);
        };
        diesel::update(u::uploads.filter(u::id.eq(id)))
            .set((
                u::state.eq(UploadState::Terminated.as_str()),
                u::updated_at.eq(now()),
                u::lease_owner.eq(None::<String>),
                u::lease_expires_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        Ok(Some(row))
    })
}

/// Open uploads past their expiry whose lease is free or lapsed (oldest first).
pub fn expired_unleased(conn: &mut DbConnection, limit: i64) -> Result<Vec<UploadRow>, DbError> {
    let now = now();
    Ok(u::uploads
        .filter(u::state.eq(UploadState::Open.as_str()))
        .filter(u::expires_at.lt(now))
        .filter(u::lease_owner.is_null().or(u::lease_expires_at.lt(now)))
        .order(u::expires_at.asc())
        .limit(limit)
        .select(UploadRow::as_select())
        .load(conn)?)
}

/// Turns one expired open upload into an `expired` tombstone, unless it changed meanwhile.
pub fn mark_expired(conn: &mut DbConnection, id: &str) -> Result<bool, DbError> {
    let now = now();
    let updated = diesel::update(
        u::uploads
            .filter(u::id.eq(id))
            .filter(u::state.eq(UploadState::Open.as_str()))
            .filter(u::expires_at.lt(now))
            .filter(u::lease_owner.is_null().or(u::lease_expires_at.lt(now))),
    )
    .set((u::state.eq(UploadState::Expired.as_str()), u::updated_at.eq(now)))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Deletes tombstones older than `before`.
pub fn purge_tombstones(conn: &mut DbConnection, before: NaiveDateTime) -> Result<usize, DbError> {
    Ok(diesel::delete(
        u::uploads
            .filter(u::state.eq_any([UploadState::Terminated.as_str(), UploadState::Expired.as_str()]))
            .filter(u::updated_at.lt(before)),
    )
    .execute(conn)?)
}

/// The open uploads stored under these keys: (key, multipart upload id once created).
pub fn open_by_keys(conn: &mut DbConnection, keys: &[String]) -> Result<Vec<(String, Option<String>)>, DbError> {
    Ok(u::uploads
        .filter(u::store_key.eq_any(keys))
        .filter(u::state.eq(UploadState::Open.as_str()))
        .select((u::store_key, u::multipart_id))
        .load(conn)?)
}

/// Records where a new upload's bytes go, once the store has created it.
pub fn set_storage(
    conn: &mut DbConnection,
    id: &str,
    part_size: Option<i64>,
    multipart_id: Option<String>,
) -> Result<(), DbError> {
    diesel::update(u::uploads.filter(u::id.eq(id)))
        .set((u::part_size.eq(part_size), u::multipart_id.eq(multipart_id)))
        .execute(conn)?;
    Ok(())
}

/// Removes a row whose creation failed before anything was stored.
pub fn delete(conn: &mut DbConnection, id: &str) -> Result<(), DbError> {
    diesel::delete(u::uploads.filter(u::id.eq(id))).execute(conn)?;
    Ok(())
}
