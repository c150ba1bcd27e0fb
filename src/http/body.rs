//! Streams a request body into the upload's session.

use std::time::Duration;

use tokio::time::Instant;

use actix_web::HttpRequest;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::db::models::UploadRow;
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::listener::ReadGate;
use crate::session::AppendSpec;
use crate::state::AppState;
use crate::store::BodySender;

/// Hands the body to the session once it has the upload's lock, and waits for the
/// commit. If this future is dropped (the client went away, the server is shutting
/// down) the pipe closes without `End` and the session keeps what arrived. Where the
/// listener gave `req`'s connection a [`ReadGate`] (HTTP/1.1, plain or over TLS), reading
/// it stops while a chunk waits for room, instead of actix-http buffering ahead.
pub async fn append_body<S, E>(
    state: &AppState,
    id: &UploadId,
    spec: AppendSpec,
    req: &HttpRequest,
    payload: S,
) -> Result<UploadRow, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let submitted = state.sessions.append(id, spec).await?;
    let done = submitted.done;
    let Some(tx) = submitted.body else {
        return Err(ApiError::Internal("append started without a body pipe".into()));
    };
    let idle = Duration::from_secs(state.settings.server.body_idle_timeout_secs.max(1));
    let deadline = Instant::now() + Duration::from_secs(state.settings.server.max_request_secs.max(1));
    let gate = req.conn_data::<ReadGate>().cloned();
    let pump = pump(payload, tx, idle, deadline, gate, submitted.cut);
    tokio::pin!(done);
    tokio::pin!(pump);
    let result = tokio::select! {
        result = &mut done => result,
        () = &mut pump => done.await,
    };
    result.map_err(|_| ApiError::Unavailable("upload session stopped".into()))?
}

/// What [`append_to_end`] made of a body.
pub struct Ended {
    pub row: UploadRow,
    /// The body arrived whole, so the upload was completed where it ended. If not, what
    /// arrived is kept and the upload stays open (resumable), its length still unknown.
    pub whole: bool,
}

/// Appends a body that ends the upload wherever it ends, to an upload whose length is not
/// known (a form's file part; a draft request completing an upload without a
/// Content-Length): the bytes first, then, if the body arrived whole, the length is declared
/// at the new offset, which completes the upload (on S3, its staged tail becomes the last
/// part). A body cut short never completes anything.
pub async fn append_to_end<S, E>(
    state: &AppState,
    id: &UploadId,
    expected_offset: u64,
    req: &HttpRequest,
    payload: S,
) -> Result<Ended, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut ended = false;
    let watched = futures_util::stream::unfold((payload, &mut ended), |(mut payload, ended)| async move {
        match payload.next().await {
            Some(item) => Some((item, (payload, ended))),
            None => {
                *ended = true;
                None
            }
        }
    });
    let spec = AppendSpec { expected_offset, declare_length: None, checksum: None, content_length: None };
    let row = append_body(state, id, spec, req, Box::pin(watched)).await?;
    if !ended {
        return Ok(Ended { row, whole: false });
    }
    let size = row.offset();
    let finish =
        AppendSpec { expected_offset: size, declare_length: Some(size), checksum: None, content_length: Some(0) };
    let empty = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
    let row = append_body(state, id, finish, req, empty).await?;
    Ok(Ended { row, whole: true })
}

async fn pump<S, E>(
    mut payload: S,
    tx: BodySender,
    idle: Duration,
    deadline: Instant,
    gate: Option<ReadGate>,
    mut cut: tokio::sync::watch::Receiver<u64>,
) where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    // One future for the whole body, not one per chunk: a later request cutting this body.
    let cut_off = async move {
        if cut.changed().await.is_err() {
            // The session's entry is gone: nobody can cut this body any more.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(cut_off);
    loop {
        let wait_until = deadline.min(Instant::now() + idle);
        let next = tokio::select! {
            // Checked first, so that a body that never stalls is cut too.
            biased;
            () = &mut cut_off => return tx.end(false).await,
            next = tokio::time::timeout_at(wait_until, payload.next()) => next,
        };
        match next {
            Ok(Some(Ok(chunk))) => {
                // Usually the chunk goes straight in and nobody sees the gate shut.
                let _closed = gate.as_ref().map(ClosedGate::new);
                if tx.send_data(chunk).await.is_err() {
                    return;
                }
            }
            Ok(None) => return tx.end(true).await,
            // A broken connection, a stalled body or one over its time: the writer keeps what it has.
            Ok(Some(Err(_))) | Err(_) => return tx.end(false).await,
        }
    }
}

/// Keeps the connection's reads held while a chunk waits for room in the pipe, and lets
/// them go however the wait ends (the pump may be dropped mid-wait).
struct ClosedGate<'a>(&'a ReadGate);

impl<'a> ClosedGate<'a> {
    fn new(gate: &'a ReadGate) -> Self {
        gate.close();
        ClosedGate(gate)
    }
}

impl Drop for ClosedGate<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}
