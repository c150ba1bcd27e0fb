//! Queries behind `hoist reconcile`: walking rows by state, and rewriting an upload's
//! progress from what the store proves it holds.

use diesel::prelude::*;

use super::models::{UploadRow, UploadState};
use super::schema::parts::dsl as p;
use super::schema::uploads::dsl as u;
use super::uploads::{insert_part, now};
use super::{DbConnection, DbError};

/// Rows in `state` with ids after `after`, in id order (the primary key), `limit` at most.
pub fn rows_after(
    conn: &mut DbConnection,
    state: UploadState,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UploadRow>, DbError> {
    let mut query = u::uploads.filter(u::state.eq(state.as_str())).into_boxed();
    if let Some(after) = after {
        query = query.filter(u::id.gt(after.to_owned()));
    }
    Ok(query.order(u::id.asc()).limit(limit).select(UploadRow::as_select()).load(conn)?)
}

/// Sets an open upload's offset and its recorded parts to what the store holds. Any lease
/// is released and the fencing token moves on, so a writer from before cannot commit.
pub fn set_progress(
    conn: &mut DbConnection,
    id: &str,
    offset: i64,
    parts: &[(i32, i64, String)],
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        diesel::delete(p::parts.filter(p::upload_id.eq(id))).execute(conn)?;
        for (number, size, etag) in parts {
            insert_part(conn, id, *number, *size, etag)?;
        }
        diesel::update(u::uploads.filter(u::id.eq(id)))
            .set((
                u::upload_offset.eq(offset),
                u::updated_at.eq(now()),
                u::lease_owner.eq(None::<String>),
                u::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
                u::lease_token.eq(u::lease_token + 1),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// Marks an upload complete at `size` bytes: the store holds its finished object.
pub fn mark_complete(conn: &mut DbConnection, id: &str, size: i64) -> Result<(), DbError> {
    let now = now();
    diesel::update(u::uploads.filter(u::id.eq(id)))
        .set((
            u::state.eq(UploadState::Complete.as_str()),
            u::upload_offset.eq(size),
            u::upload_length.eq(Some(size)),
            u::completed_at.eq(Some(now)),
            u::updated_at.eq(now),
            u::lease_owner.eq(None::<String>),
            u::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
            u::lease_token.eq(u::lease_token + 1),
        ))
        .execute(conn)?;
    Ok(())
}
