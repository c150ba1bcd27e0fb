//! `Idempotency-Key` records: one row per (client identity, key). A row without a status
//! is a request still in flight.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::models::StoredResponse;
use super::schema::idempotency_keys::dsl as k;
use super::uploads::now;
use super::{DbConnection, DbError};

pub enum Begin {
    /// The caller owns the key now and must `finish` or `abandon` it.
    Started,
    Replay(StoredResponse),
    InFlight,
    FingerprintMismatch,
}

type Row = (String, Option<i32>, Option<String>, Option<Vec<u8>>, NaiveDateTime);

pub fn begin(
    conn: &mut DbConnection,
    scope: &str,
    key: &str,
    fingerprint: &str,
    expires_at: NaiveDateTime,
) -> Result<Begin, DbError> {
    // Two rounds at most: a lost insert race re-reads the winner's row.
    for _ in 0..2 {
        let existing: Option<Row> = k::idempotency_keys
            .find((scope, key))
            .select((k::fingerprint, k::status, k::response_headers, k::response_body, k::expires_at))
            // By primary key: no `LIMIT ?` (see `uploads::find`).
            .get_result(conn)
            .optional()?;
        match existing {
            Some((_, _, _, _, expires)) if expires <= now() => {
                diesel::delete(k::idempotency_keys.find((scope, key))).execute(conn)?;
            }
            Some((stored_fingerprint, _, _, _, _)) if stored_fingerprint != fingerprint => {
                return Ok(Begin::FingerprintMismatch)
            }
            Some((_, None, _, _, _)) => return Ok(Begin::InFlight),
            Some((_, Some(status), headers, body, _)) => {
                let headers =
                    headers.and_then(|h| serde_json::from_str::<Vec<(String, String)>>(&h).ok()).unwrap_or_default();
                return Ok(Begin::Replay(StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    headers,
                    body: body.unwrap_or_default(),
                }));
            }
            None => {}
        }
        let inserted = diesel::insert_into(k::idempotency_keys)
            .values((
                k::scope.eq(scope),
                k::idem_key.eq(key),
                k::fingerprint.eq(fingerprint),
                k::created_at.eq(now()),
                k::expires_at.eq(expires_at),
            ))
            .execute(conn);
        match inserted {
            Ok(_) => return Ok(Begin::Started),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Ok(Begin::InFlight)
}

pub fn finish(conn: &mut DbConnection, scope: &str, key: &str, response: &StoredResponse) -> Result<(), DbError> {
    let headers = serde_json::to_string(&response.headers).unwrap_or_else(|_| "[]".to_owned());
    diesel::update(k::idempotency_keys.find((scope, key)))
        .set((
            k::status.eq(Some(i32::from(response.status))),
            k::response_headers.eq(Some(headers)),
            k::response_body.eq(Some(response.body.clone())),
        ))
        .execute(conn)?;
    Ok(())
}

/// Frees a key whose request failed transiently, so that a retry runs again.
pub fn abandon(conn: &mut DbConnection, scope: &str, key: &str) -> Result<(), DbError> {
    diesel::delete(k::idempotency_keys.find((scope, key)).filter(k::status.is_null())).execute(conn)?;
    Ok(())
}

pub fn purge_expired(conn: &mut DbConnection) -> Result<usize, DbError> {
    Ok(diesel::delete(k::idempotency_keys.filter(k::expires_at.lt(now()))).execute(conn)?)
}
