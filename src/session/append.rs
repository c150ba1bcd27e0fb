//! One PATCH (or the data of a creation-with-upload POST), run by the upload's session.

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};

use super::registry::SessionDeps;
use crate::db::models::{UploadRow, UploadState};
use crate::db::uploads::{self, LeaseOutcome, Progress};
use crate::db::{CommitRequest, CommitResult};
use crate::domain::{Checksum, UploadId};
use crate::error::ApiError;
use crate::store::{checksum_verdict, AppendOutcome, AppendTarget, BodyEnd, BodyEvent, BodyReceiver, UploadedPart};

/// The lease this node holds on an upload, with its fencing token.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub token: i64,
    pub until: NaiveDateTime,
}

/// What a PATCH asks for, parsed from its headers.
#[derive(Debug, Clone)]
pub struct AppendSpec {
    pub expected_offset: u64,
    /// `Upload-Length` sent on a PATCH to a deferred-length upload.
    pub declare_length: Option<u64>,
    pub checksum: Option<Checksum>,
    pub content_length: Option<u64>,
}

pub struct AppendRequest {
    pub spec: AppendSpec,
    pub body: BodyReceiver,
}

fn lease_deadline(deps: &SessionDeps) -> NaiveDateTime {
    lease_deadline_after(deps.settings.uploads.lease_ttl_secs)
}

/// A lease taken or renewed now, for `ttl_secs`, runs out then.
fn lease_deadline_after(ttl_secs: u64) -> NaiveDateTime {
    let ttl = chrono::Duration::seconds(i64::try_from(ttl_secs).unwrap_or(60));
    (Utc::now() + ttl).naive_utc()
}

/// Takes the lease if this session does not hold a fresh one, returning the current row.
async fn ensure_lease(deps: &SessionDeps, id: &UploadId, lease: Option<Lease>) -> Result<(Lease, UploadRow), ApiError> {
    let ttl_half = chrono::Duration::seconds(i64::try_from(deps.settings.uploads.lease_ttl_secs / 2).unwrap_or(30));
    if let Some(lease) = lease {
        if lease.until - ttl_half > Utc::now().naive_utc() {
            if let Some(row) = deps.cache.get(id.as_str()).filter(|row| row.lease_token == lease.token) {
                return Ok((lease, (*row).clone()));
            }
        }
    }
    let until = lease_deadline(deps);
    let node = deps.node_id.clone();
    let key = id.to_string();
    match deps.repo.run(move |conn| uploads::acquire_lease(conn, &key, &node, until)).await? {
        LeaseOutcome::Acquired(row) => {
            let lease = Lease { token: row.lease_token, until };
            deps.cache.put_from_session((*row).clone());
            Ok((lease, *row))
        }
        LeaseOutcome::HeldElsewhere => Err(ApiError::Locked),
        LeaseOutcome::NotFound => Err(ApiError::NotFound),
    }
}

/// Checks the request against the row; returns (length once known, bytes allowed).
fn admit(deps: &SessionDeps, row: &UploadRow, request: &AppendSpec) -> Result<(Option<u64>, u64), ApiError> {
    if row.is_final_concat() {
        return Err(ApiError::PatchOnFinal);
    }
    match row.state() {
        UploadState::Terminated => return Err(ApiError::Terminated),
        UploadState::Expired => return Err(ApiError::Expired),
        _ if row.is_expired_at(Utc::now()) => return Err(ApiError::Expired),
        _ => {}
    }
    let offset = row.offset();
    if request.expected_offset != offset {
        return Err(ApiError::OffsetMismatch { current: offset, requested: request.expected_offset });
    }
    let max_size = deps.settings.uploads.max_size;
    let length = match (row.length(), request.declare_length) {
        (Some(existing), Some(declared)) if existing != declared => {
            return Err(ApiError::bad_request("upload_length_immutable", "Upload-Length is already set"))
        }
        (Some(existing), _) => Some(existing),
        (None, Some(declared)) if declared < offset => {
            return Err(ApiError::bad_request("upload_length_below_offset", "Upload-Length is below the offset"))
        }
        (None, Some(declared)) if declared > max_size => {
            return Err(ApiError::TooLarge { code: "upload_too_large", message: format!("Tus-Max-Size is {max_size}") })
        }
        (None, declared) => declared,
    };
    let allowed = length.unwrap_or(max_size).saturating_sub(offset);
    if request.content_length.is_some_and(|len| len > allowed) {
        return Err(too_large(allowed));
    }
    Ok((length, allowed))
}

async fn finish(
    deps: &SessionDeps,
    id: &UploadId,
    target: &AppendTarget,
    new_parts: &[UploadedPart],
) -> Result<(), ApiError> {
    if target.multipart_id.is_none() {
        return deps.store.finish(target, &[]).await.map_err(Into::into);
    }
    let key = id.to_string();
    let recorded = deps.repo.run(move |conn| uploads::list_parts(conn, &key)).await?;
    let mut parts: Vec<UploadedPart> = recorded
        .into_iter()
        .filter(|(number, _, _)| !new_parts.iter().any(|p| p.number == *number))
        .map(|(number, size, etag)| UploadedPart { number, size, etag })
        .collect();
    parts.extend_from_slice(new_parts);
    deps.store.finish(target, &parts).await.map_err(Into::into)
}

fn too_large(allowed: u64) -> ApiError {
    ApiError::TooLarge {
        code: "exceeds_upload_length",
        message: format!("the body is longer than the {allowed} bytes this upload still takes"),
    }
}

/// What the upload looked like when the append was admitted: the facts its outcome is
/// judged against.
#[derive(Debug, Clone)]
struct Admitted {
    offset: u64,
    /// The length once known (declared at creation or by this request).
    length: Option<u64>,
    allowed: u64,
    had_length: bool,
    was_open: bool,
    has_checksum: bool,
    lease_ttl_secs: u64,
}

/// What an append's outcome asks of the database.
enum Plan {
    /// Nothing of the body is kept: answer this.
    Reject(ApiError),
    /// No byte came and nothing else changes: answer with the row as it was.
    Unchanged,
    Commit(Progress),
}

fn plan(admitted: &Admitted, outcome: &AppendOutcome) -> Plan {
    match outcome.end {
        BodyEnd::TooLarge => return Plan::Reject(too_large(admitted.allowed)),
        BodyEnd::ChecksumMismatch => return Plan::Reject(ApiError::ChecksumMismatch),
        BodyEnd::Interrupted if admitted.has_checksum => {
            return Plan::Reject(ApiError::bad_request(
                "body_incomplete",
                "the body ended early; a checksummed chunk is kept whole or not at all",
            ))
        }
        BodyEnd::Interrupted | BodyEnd::Complete => {}
    }
    let to_offset = admitted.offset + outcome.written;
    let complete = admitted.length.is_some_and(|l| l == to_offset);
    let declares = !admitted.had_length && admitted.length.is_some();
    if outcome.written == 0 && !declares && !(complete && admitted.was_open) {
        return Plan::Unchanged;
    }
    // The lease runs from the commit, not from the start of a body that may have taken minutes.
    Plan::Commit(Progress {
        from_offset: admitted.offset,
        to_offset,
        declare_length: if declares { admitted.length } else { None },
        complete,
        lease_until: lease_deadline_after(admitted.lease_ttl_secs),
        new_parts: outcome.parts.iter().map(|p| (p.number, p.size, p.etag.clone())).collect(),
    })
}

/// What a body sent to a complete upload amounts to: nothing kept either way.
async fn body_onto_complete_upload(body: &mut BodyReceiver, checksum: Option<&Checksum>) -> AppendOutcome {
    let end = loop {
        match body.next().await {
            BodyEvent::Data(chunk) if chunk.is_empty() => continue,
            BodyEvent::Data(_) => break BodyEnd::TooLarge,
            BodyEvent::End => break BodyEnd::Complete,
            BodyEvent::Failed => break BodyEnd::Interrupted,
        }
    };
    let end = checksum_verdict(end, checksum, checksum.map(|c| c.algorithm.hasher()));
    AppendOutcome { written: 0, end, parts: Vec::new(), superseded: Vec::new() }
}

/// An append's outcome once the database has seen it.
enum Settled {
    Reject(ApiError),
    Unchanged,
    Committed { progress: Progress, result: Box<CommitResult> },
}

/// Returns the lease to keep (None if lost) and the outcome.
pub async fn run_append(
    deps: &SessionDeps,
    id: &UploadId,
    lease: Option<Lease>,
    mut request: AppendRequest,
) -> (Option<Lease>, Result<UploadRow, ApiError>) {
    let (lease, row) = match ensure_lease(deps, id, lease).await {
        Ok(found) => found,
        Err(err) => return (None, Err(err)),
    };
    let (length, allowed) = match admit(deps, &row, &request.spec) {
        Ok(admitted) => admitted,
        Err(err) => return (Some(lease), Err(err)),
    };
    let offset = row.offset();
    let target = AppendTarget {
        key: row.store_key.clone(),
        offset,
        length,
        part_size: row.part_size.and_then(|p| u64::try_from(p).ok()),
        multipart_id: row.multipart_id.clone(),
    };
    let admitted = Admitted {
        offset,
        length,
        allowed,
        had_length: row.length().is_some(),
        was_open: row.state() == UploadState::Open,
        has_checksum: request.spec.checksum.is_some(),
        lease_ttl_secs: deps.settings.uploads.lease_ttl_secs,
    };

    // A complete upload takes no byte more and leaves its store nothing to do: the S3 store
    // has completed its multipart upload and deleted the staged tail that an append reaching
    // the length would read back as the last part (a 500 once, found by Schemathesis). The
    // body alone decides the answer: none, the offset as it is; any byte, 413.
    if !admitted.was_open {
        let outcome = body_onto_complete_upload(&mut request.body, request.spec.checksum.as_ref()).await;
        return match plan(&admitted, &outcome) {
            Plan::Reject(err) => (Some(lease), Err(err)),
            Plan::Unchanged | Plan::Commit(_) => (Some(lease), Ok(row)),
        };
    }

    // Keep the lease alive while a long body streams in.
    let renew_every = Duration::from_secs((deps.settings.uploads.lease_ttl_secs / 3).max(1));
    let renew = async {
        loop {
            tokio::time::sleep(renew_every).await;
            let (key, until) = (id.to_string(), lease_deadline(deps));
            let _ = deps.repo.run(move |conn| uploads::renew_lease(conn, &key, lease.token, until)).await;
        }
    };
    // Where the store has a blocking step of its own (disk), the commit runs there, right
    // after the fsync. A completed disk upload needs no `finish` call (nothing to assemble).
    let commit_on_store_thread = {
        let (admitted, repo, admitted_row) = (admitted.clone(), deps.repo.clone(), row.clone());
        move |outcome: &AppendOutcome| -> Settled {
            match plan(&admitted, outcome) {
                Plan::Reject(err) => Settled::Reject(err),
                Plan::Unchanged => Settled::Unchanged,
                Plan::Commit(progress) => {
                    let request =
                        CommitRequest { admitted: admitted_row, token: lease.token, progress: progress.clone() };
                    Settled::Committed { result: Box::new(repo.commit_progress_blocking(request)), progress }
                }
            }
        }
    };
    let checksum = request.spec.checksum.as_ref();
    let append = deps.store.append(&target, &mut request.body, allowed, checksum, commit_on_store_thread);
    let appended = tokio::select! {
        appended = append => appended,
        () = renew => unreachable!("the renewal loop never ends"),
    };
    let (outcome, settled) = match appended {
        Ok(appended) => appended,
        Err(err) => return (Some(lease), Err(err.into())),
    };
    let settled = match settled {
        Some(settled) => settled,
        None => match commit_after_append(deps, id, &target, &admitted, &outcome, &row, lease.token).await {
            Ok(settled) => settled,
            Err(err) => return (Some(lease), Err(err)),
        },
    };
    let (progress, committed) = match settled {
        Settled::Reject(err) => return (Some(lease), Err(err)),
        Settled::Unchanged => return (Some(lease), Ok(row)),
        Settled::Committed { progress, result } => (progress, *result),
    };
    match committed {
        Ok(Some(row)) => {
            deps.cache.put_from_session(row.clone());
            deps.metrics.bytes_received.inc_by(outcome.written);
            deps.metrics.patch_body_bytes.observe(outcome.written as f64);
            if progress.complete {
                deps.metrics.uploads_completed.inc();
            }
            deps.store.forget(outcome.superseded).await;
            (Some(Lease { token: lease.token, until: progress.lease_until }), Ok(row))
        }
        Ok(None) => {
            // Fenced out, terminated or expired meanwhile: nothing was acknowledged.
            deps.cache.invalidate(id.as_str());
            let key = id.to_string();
            let current = deps.repo.run(move |conn| uploads::find(conn, &key)).await;
            let err = match current {
                Ok(Some(row)) if row.state() == UploadState::Open => {
                    ApiError::OffsetMismatch { current: row.offset(), requested: offset }
                }
                Ok(Some(row)) if row.state() == UploadState::Expired => ApiError::Expired,
                Ok(Some(_)) | Ok(None) => ApiError::Terminated,
                Err(err) => err.into(),
            };
            (None, Err(err))
        }
        // The bytes are on disk but not acknowledged; the next append truncates them.
        Err(err) => (Some(lease), Err(err.into())),
    }
}

/// The commit when the store returned without running it (S3): a completed upload is
/// assembled first (CompleteMultipartUpload with the recorded parts), then the offset moves.
async fn commit_after_append(
    deps: &SessionDeps,
    id: &UploadId,
    target: &AppendTarget,
    admitted: &Admitted,
    outcome: &AppendOutcome,
    row: &UploadRow,
    token: i64,
) -> Result<Settled, ApiError> {
    let progress = match plan(admitted, outcome) {
        Plan::Reject(err) => return Ok(Settled::Reject(err)),
        Plan::Unchanged => return Ok(Settled::Unchanged),
        Plan::Commit(progress) => progress,
    };
    if progress.complete {
        // Completion uses the recorded parts (plus this write's), never a listing.
        finish(deps, id, target, &outcome.parts).await?;
    }
    let request = CommitRequest { admitted: row.clone(), token, progress: progress.clone() };
    Ok(Settled::Committed { result: Box::new(deps.repo.commit_progress(request).await), progress })
}
