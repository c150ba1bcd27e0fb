use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::uploads;

/// States of an upload row. `terminated` and `expired` rows are tombstones: requests on
/// them answer 410 until the janitor purges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Open,
    Complete,
    Terminated,
    Expired,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Open => "open",
            UploadState::Complete => "complete",
            UploadState::Terminated => "terminated",
            UploadState::Expired => "expired",
        }
    }

    fn parse(raw: &str) -> UploadState {
        match raw {
            "open" => UploadState::Open,
            "complete" => UploadState::Complete,
            "expired" => UploadState::Expired,
            // Unknown states are treated as gone rather than writable.
            _ => UploadState::Terminated,
        }
    }
}

pub const CONCAT_PARTIAL: &str = "partial";
pub const CONCAT_FINAL: &str = "final";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = uploads)]
pub struct UploadRow {
    pub id: String,
    pub owner: String,
    pub state: String,
    pub upload_length: Option<i64>,
    pub upload_offset: i64,
    pub metadata: String,
    pub concat_kind: Option<String>,
    pub concat_parts: Option<String>,
    pub store_key: String,
    pub part_size: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub lease_token: i64,
    pub multipart_id: Option<String>,
}

impl UploadRow {
    pub fn state(&self) -> UploadState {
        UploadState::parse(&self.state)
    }

    pub fn offset(&self) -> u64 {
        u64::try_from(self.upload_offset).unwrap_or(0)
    }

    pub fn length(&self) -> Option<u64> {
        self.upload_length.and_then(|l| u64::try_from(l).ok())
    }

    pub fn is_final_concat(&self) -> bool {
        self.concat_kind.as_deref() == Some(CONCAT_FINAL)
    }

    pub fn is_partial_concat(&self) -> bool {
        self.concat_kind.as_deref() == Some(CONCAT_PARTIAL)
    }

    /// Unfinished uploads past `expires_at` are gone even before the janitor sweeps them.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.state() == UploadState::Open && self.expires_at.is_some_and(|at| at.and_utc() <= now)
    }

    pub fn expires_at_utc(&self) -> Option<DateTime<Utc>> {
        self.expires_at.map(|at| at.and_utc())
    }
}

/// A stored response for `Idempotency-Key` replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}
