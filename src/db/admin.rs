//! Queries behind the admin API. Lists page newest first by (created_at, id) with a
//! keyset cursor, so every page is an index range scan, however deep.

use chrono::NaiveDateTime;
use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::models::UploadRow;
use super::schema::uploads::dsl as u;
use super::{DbConnection, DbError};

#[derive(Debug, Default, Clone)]
pub struct UploadFilter {
    pub owner: Option<String>,
    pub state: Option<String>,
    pub created_after: Option<NaiveDateTime>,
    pub created_before: Option<NaiveDateTime>,
    pub min_size: Option<i64>,
    pub max_size: Option<i64>,
    /// Resume after this (created_at, id).
    pub after: Option<(NaiveDateTime, String)>,
    pub limit: i64,
}

pub fn list_uploads(conn: &mut DbConnection, filter: &UploadFilter) -> Result<Vec<UploadRow>, DbError> {
    let mut query = u::uploads.select(UploadRow::as_select()).into_boxed();
    if let Some(owner) = &filter.owner {
        query = query.filter(u::owner.eq(owner.clone()));
    }
    if let Some(state) = &filter.state {
        query = query.filter(u::state.eq(state.clone()));
    }
    if let Some(after) = filter.created_after {
        query = query.filter(u::created_at.ge(after));
    }
    if let Some(before) = filter.created_before {
        query = query.filter(u::created_at.lt(before));
    }
    if let Some(min) = filter.min_size {
        query = query.filter(u::upload_length.ge(min));
    }
    if let Some(max) = filter.max_size {
        query = query.filter(u::upload_length.le(max));
    }
    if let Some((created, id)) = &filter.after {
        query = query.filter(u::created_at.lt(*created).or(u::created_at.eq(*created).and(u::id.lt(id.clone()))));
    }
    Ok(query.order((u::created_at.desc(), u::id.desc())).limit(filter.limit).load(conn)?)
}

/// Uploads and their bytes (offsets) per state.
pub fn totals_by_state(conn: &mut DbConnection) -> Result<Vec<(String, i64, i64)>, DbError> {
    // SUM(BIGINT) is NUMERIC on PostgreSQL and INTEGER on SQLite: cast to one type.
    let bytes = sql::<Nullable<BigInt>>("CAST(SUM(upload_offset) AS BIGINT)");
    let rows: Vec<(String, i64, Option<i64>)> =
        u::uploads.group_by(u::state).select((u::state, count_star(), bytes)).load(conn)?;
    Ok(rows.into_iter().map(|(s, n, b)| (s, n, b.unwrap_or(0))).collect())
}

/// Moves the expiry of an open upload; false if it is not open.
pub fn set_expiry(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> Result<bool, DbError> {
    let updated = diesel::update(u::uploads.filter(u::id.eq(id)).filter(u::state.eq("open")))
        .set(u::expires_at.eq(Some(at)))
        .execute(conn)?;
    Ok(updated == 1)
}
