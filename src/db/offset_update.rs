//! The offset UPDATE every PATCH runs, as a statement the connection keeps prepared.
//!
//! Diesel never caches an `UPDATE` built with its DSL (`UpdateStatement` marks itself unsafe
//! to cache, since a changeset may skip `None` fields), so each PATCH rebuilt the SQL text
//! and SQLite parsed and compiled it again: about 7 % of the server's CPU in the 64 KiB
//! PATCH profile (`sqlite3_prepare` and diesel's query builder). This statement has a fixed
//! text and a static query id, so each connection prepares it once.
//!
//! It returns the columns the caller cannot know in advance (the two timestamps it sets,
//! as stored, since PostgreSQL keeps microseconds; and `expires_at`, which an admin may
//! have moved meanwhile), so the caller builds the new row from the one it admitted the
//! append with instead of reading the row back: that `SELECT` and the decoding of its
//! eighteen columns cost 41k of 425k instructions per 1 KiB PATCH (callgrind).

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable, Text, Timestamp};
use diesel::{QueryResult, RunQueryDsl};

/// `UPDATE uploads SET upload_offset, updated_at, lease_expires_at` where the upload is open,
/// still at `from` and still held under `token` (the compare-and-set that fences a stale
/// holder). Sets only what changes: naming `state` would rewrite three indexes' entries.
/// Returns `(updated_at, lease_expires_at, expires_at)` of the row it changed; no row when
/// the compare-and-set failed.
pub struct AdvanceOpenUpload<'a> {
    pub id: &'a str,
    pub token: i64,
    pub from: i64,
    pub to: i64,
    pub now: NaiveDateTime,
    pub lease_until: NaiveDateTime,
    /// `UploadState::Open` as stored.
    pub open: &'a str,
}

impl QueryId for AdvanceOpenUpload<'_> {
    type QueryId = AdvanceOpenUpload<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for AdvanceOpenUpload<'_> {
    type SqlType = (Timestamp, Nullable<Timestamp>, Nullable<Timestamp>);
}

impl<DB> QueryFragment<DB> for AdvanceOpenUpload<'_>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Text> + HasSqlType<Timestamp>,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
    NaiveDateTime: ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE uploads SET upload_offset = ");
        out.push_bind_param::<BigInt, _>(&self.to)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", lease_expires_at = ");
        out.push_bind_param::<Timestamp, _>(&self.lease_until)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(self.id)?;
        out.push_sql(" AND lease_token = ");
        out.push_bind_param::<BigInt, _>(&self.token)?;
        out.push_sql(" AND upload_offset = ");
        out.push_bind_param::<BigInt, _>(&self.from)?;
        out.push_sql(" AND state = ");
        out.push_bind_param::<Text, _>(self.open)?;
        // SQLite 3.35 and PostgreSQL both take RETURNING on an UPDATE.
        out.push_sql(" RETURNING updated_at, lease_expires_at, expires_at");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for AdvanceOpenUpload<'_> {}
