//! The IETF resumable-upload draft (draft-ietf-httpbis-resumable-upload), which iOS 17+
//! URLSession and tus-js-client's `ietf-draft-*` protocols speak, on the same resources as
//! tus: creation by POST to `/files`, then HEAD (offset), PATCH (append) and DELETE
//! (cancel) on the upload's `/files/{id}`. A request is a draft request when it carries
//! `Upload-Draft-Interop-Version`; the tus handlers hand such requests here. Uploads are the
//! same rows and store objects either way, so sessions, leases, quotas, expiry, admin and
//! downloads apply unchanged, and an upload begun in one protocol can be read in the other.
//!
//! Interop versions 3 to 8 differ where it matters to a server: 3 says `Upload-Incomplete`
//! (the inverse of the later `Upload-Complete`), 6 and later require PATCH bodies typed
//! `application/partial-upload`, and `Upload-Limit`'s lifetime member is `expires` in 6 and
//! `max-age` from 7 on.
//!
//! Two choices where the draft leaves room: an upload whose known length is reached is
//! complete (as in tus: no byte can follow), and its responses say `Upload-Complete: ?1`
//! even if the request said `?0`; and completing an upload that is already complete with
//! an empty append answers 200 again, so that a client retrying a final request whose
//! answer it lost learns the upload is done.

mod append;
mod create;
mod fields;
pub mod offset;
pub mod problem;

use actix_web::HttpRequest;
use chrono::Utc;

use crate::auth::Caller;
use crate::db::models::{StoredResponse, UploadRow, UploadState};
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::http::body::{append_body, append_to_end};
use crate::http::tus::settled_upload;
use crate::listener::InterimSender;
use crate::session::AppendSpec;
use crate::state::AppState;

pub use fields::{sf_boolean, sf_integer};

/// The media type of an append's body from interop version 6 on.
pub const PARTIAL_UPLOAD: &str = "application/partial-upload";
pub const INTEROP_HEADER: &str = "Upload-Draft-Interop-Version";
/// The interop versions served, oldest first.
pub const SUPPORTED: std::ops::RangeInclusive<u8> = 3..=8;

/// The draft's interop version a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InteropVersion(u8);

impl InteropVersion {
    /// None for a request that does not speak the draft (a tus request); a version outside
    /// [`SUPPORTED`] is a 400 rather than a silent fall back to tus, which would answer 412.
    pub fn of(req: &HttpRequest) -> Result<Option<Self>, ApiError> {
        let Some(raw) = crate::http::headers::optional(req, INTEROP_HEADER)? else { return Ok(None) };
        match u8::try_from(sf_integer(INTEROP_HEADER, raw)?) {
            Ok(version) if SUPPORTED.contains(&version) => Ok(Some(InteropVersion(version))),
            _ => Err(ApiError::bad_request(
                "interop_version_unsupported",
                format!(
                    "{INTEROP_HEADER} {raw} is not served; versions {} to {} are",
                    SUPPORTED.start(),
                    SUPPORTED.end()
                ),
            )),
        }
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// The header that says whether a request completes the upload: version 3 names the
    /// opposite (`Upload-Incomplete`).
    fn completeness_header(self) -> &'static str {
        if self.0 == 3 {
            "Upload-Incomplete"
        } else {
            "Upload-Complete"
        }
    }

    /// Whether the request completes the upload, from the version's completeness header.
    /// Version 3 also takes `Upload-Complete` where `Upload-Incomplete` is missing, as clients
    /// bridging versions send it.
    pub fn completes(self, req: &HttpRequest) -> Result<bool, ApiError> {
        let name = self.completeness_header();
        if let Some(raw) = crate::http::headers::optional(req, name)? {
            let value = sf_boolean(name, raw)?;
            return Ok(if self.0 == 3 { !value } else { value });
        }
        match crate::http::headers::optional(req, "Upload-Complete")? {
            Some(raw) if self.0 == 3 => sf_boolean("Upload-Complete", raw),
            _ => Err(ApiError::bad_request("missing_upload_complete", format!("{name} (?0 or ?1) is required"))),
        }
    }

    /// The completeness header for responses, said the version's way.
    pub fn completeness(self, complete: bool) -> (String, String) {
        let value = if self.0 == 3 { !complete } else { complete };
        (self.completeness_header().to_owned(), if value { "?1" } else { "?0" }.to_owned())
    }

    pub fn requires_partial_upload_type(self) -> bool {
        self.0 >= 6
    }

    /// `Upload-Limit` as this version writes it (the header arrived with version 6).
    fn limit(self, state: &AppState, row: Option<&UploadRow>) -> Option<(String, String)> {
        if self.0 < 6 {
            return None;
        }
        let age_key = if self.0 == 6 { "expires" } else { "max-age" };
        let mut value = format!("max-size={}", state.settings.uploads.max_size);
        let age = match row {
            Some(row) if row.state() != UploadState::Open => None,
            Some(row) => row.expires_at_utc().map(|at| (at - Utc::now()).num_seconds().max(0)),
            None => i64::try_from(state.settings.upload_lifetime().as_secs()).ok(),
        };
        if let Some(age) = age {
            value.push_str(&format!(", {age_key}={age}"));
        }
        Some(("Upload-Limit".to_owned(), value))
    }
}

/// Creation, answered the draft's way.
pub async fn create(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    version: InteropVersion,
    payload: actix_web::web::Payload,
) -> Result<StoredResponse, ApiError> {
    create::run(state, req, caller, version, payload).await.or_else(|err| draft_error(version, state, err))
}

/// Append, answered the draft's way.
pub async fn append(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    path: &str,
    version: InteropVersion,
    payload: actix_web::web::Payload,
) -> Result<StoredResponse, ApiError> {
    append::run(state, req, caller, path, version, payload).await.or_else(|err| draft_error(version, state, err))
}

/// Where a draft request's body goes and what it says of the upload.
struct BodyAt {
    offset: u64,
    completes: bool,
    /// The upload's length as known with this request.
    length: Option<u64>,
    /// The length this request declares to an upload that had none.
    declare: Option<u64>,
    content_length: Option<u64>,
}

/// Streams a draft request's body into the upload: to where the body ends when it completes
/// an upload of unknown length (a chunked body), else as a plain append. A request meant to
/// complete the upload that stopped short is 400 `body_incomplete`: what arrived is kept and
/// the upload stays open at the offset given.
async fn stream_body(
    state: &AppState,
    req: &HttpRequest,
    id: &UploadId,
    at: BodyAt,
    payload: actix_web::web::Payload,
) -> Result<UploadRow, ApiError> {
    let row = if at.completes && at.length.is_none() {
        append_to_end(state, id, at.offset, req, payload).await?.row
    } else {
        let spec = AppendSpec {
            expected_offset: at.offset,
            declare_length: at.declare,
            checksum: None,
            content_length: at.content_length,
        };
        append_body(state, id, spec, req, payload).await?
    };
    if at.completes && row.state() != UploadState::Complete {
        return Err(ApiError::bad_request(
            "body_incomplete",
            format!("the body ended at offset {} before completing the upload; resume from there", row.offset()),
        ));
    }
    Ok(row)
}

/// `Upload-Limit` for discovery (OPTIONS), in the newest version's terms: limits before any
/// upload exists.
pub fn discovery_limit(state: &AppState) -> String {
    InteropVersion(*SUPPORTED.end()).limit(state, None).map(|(_, value)| value).unwrap_or_default()
}

/// Sends `104 Upload Resumption Supported` with the upload's URL on connections whose
/// listener can: HTTP/1.1, plain or over TLS (not HTTP/2, whose stack writes no 1xx of ours).
fn announce(req: &HttpRequest, version: InteropVersion, state: &AppState, location: &str) {
    let Some(interim) = req.conn_data::<InterimSender>() else { return };
    let mut head = format!(
        "HTTP/1.1 104 Upload Resumption Supported\r\nLocation: {location}\r\n{INTEROP_HEADER}: {}\r\n",
        version.number()
    );
    if let Some((name, value)) = version.limit(state, None) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    interim.send(head.as_bytes());
}

/// The upload's length as a request indicates it, checked against every other indication
/// (`Upload-Length`; the offset plus `Content-Length` on a request that completes the
/// upload; the length the upload already has): None while none is known.
fn consistent_length(
    req: &HttpRequest,
    completes: bool,
    offset: u64,
    known: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    let declared = crate::http::headers::optional(req, "Upload-Length")?
        .map(|raw| sf_integer("Upload-Length", raw))
        .transpose()?;
    let implied = match crate::http::headers::content_length(req)? {
        Some(content_length) if completes => Some(offset.saturating_add(content_length)),
        _ => None,
    };
    let mut length = known;
    for indicated in [declared, implied].into_iter().flatten() {
        match length {
            Some(length) if length != indicated => {
                return Err(ApiError::InconsistentLength(format!(
                    "the request indicates a length of {indicated} bytes, the upload's is {length}"
                )))
            }
            _ if indicated < offset => {
                return Err(ApiError::InconsistentLength(format!(
                    "the request indicates a length of {indicated} bytes, below the offset {offset}"
                )))
            }
            _ => length = Some(indicated),
        }
    }
    Ok(length)
}

/// The draft's answers to errors that it names (its problem types), and `Upload-Limit` on a
/// 413, which the draft asks for; other errors are left for the caller to answer.
fn draft_error(version: InteropVersion, state: &AppState, err: ApiError) -> Result<StoredResponse, ApiError> {
    if let Some(stored) = problem::render(&err) {
        return Ok(stored);
    }
    if matches!(err, ApiError::TooLarge { .. }) {
        let mut stored = err.to_stored();
        stored.headers.extend(version.limit(state, None));
        return Ok(stored);
    }
    Err(err)
}

/// The headers every answer about an upload's state carries.
fn state_headers(version: InteropVersion, state: &AppState, row: &UploadRow) -> Vec<(String, String)> {
    let mut headers = vec![("Upload-Offset".to_owned(), row.offset().to_string())];
    headers.push(version.completeness(row.state() == UploadState::Complete));
    if let Some(length) = row.length() {
        headers.push(("Upload-Length".to_owned(), length.to_string()));
    }
    headers.extend(version.limit(state, Some(row)));
    headers
}
