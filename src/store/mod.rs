//! Where upload bytes live. One enum over the backends keeps native async fns without
//! boxing: `disk` (one file per upload) and `s3` (one multipart upload per upload).

mod body;
mod disk;
mod s3;
mod spool;
mod spool_dir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use body::{body_channel, BodyBudget, BodyEvent, BodyReceiver, BodySender, DirectWrite, PipeClosed};
pub use disk::DiskStore;
pub use s3::{part_size_for, S3Store, StagedObject};

use crate::domain::Checksum;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The object store did not answer or refused: retry later (503).
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The object store rejected what we asked (a bug or a misconfiguration, not the client).
    #[error("object store rejected the request: {0}")]
    Rejected(String),
}

/// How an append's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// The client sent the whole body.
    Complete,
    /// The client went away or the body stalled; what arrived was kept (unless the chunk
    /// carried a checksum, which makes it all-or-nothing).
    Interrupted,
    /// The body went past the allowed size; nothing of this append was kept.
    TooLarge,
    /// The body did not match `Upload-Checksum`; nothing of this append was kept.
    ChecksumMismatch,
}

/// Where an append writes: the upload's object and how far it is.
#[derive(Debug, Clone)]
pub struct AppendTarget {
    pub key: String,
    /// The committed offset: the append starts here.
    pub offset: u64,
    /// The length, if known (declared at creation or by this request).
    pub length: Option<u64>,
    pub part_size: Option<u64>,
    pub multipart_id: Option<String>,
}

/// A part the S3 store uploaded during an append, to be recorded with the new offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: i32,
    pub size: i64,
    pub etag: String,
}

pub struct AppendOutcome {
    /// Bytes now durable in the store (0 unless the append is to be committed).
    pub written: u64,
    pub end: BodyEnd,
    pub parts: Vec<UploadedPart>,
    /// Staged objects this append folded into parts; delete them once committed.
    pub superseded: Vec<String>,
}

/// Headers the final object is served with (S3 stores them on the object).
#[derive(Debug, Clone, Default)]
pub struct ObjectHeaders {
    pub content_type: String,
    pub filename: Option<String>,
}

impl ObjectHeaders {
    pub fn content_disposition(&self) -> String {
        match &self.filename {
            Some(name) => format!("attachment; filename=\"{name}\""),
            None => "attachment".to_owned(),
        }
    }
}

/// What `create` made for a new upload.
pub struct CreatedObject {
    pub multipart_id: Option<String>,
    pub part_size: Option<u64>,
}

/// How a completed upload is fetched.
pub enum Download {
    /// The disk store's file; served through an HMAC-signed URL of Hoist's own.
    LocalFile(PathBuf),
    /// An S3 presigned GET.
    Redirect(String),
}

/// A complete body whose digest differs from `Upload-Checksum` becomes `ChecksumMismatch`.
pub(crate) fn checksum_verdict(
    end: BodyEnd,
    checksum: Option<&Checksum>,
    hasher: Option<crate::domain::Hasher>,
) -> BodyEnd {
    match (end, checksum, hasher) {
        (BodyEnd::Complete, Some(expected), Some(hasher)) => {
            if hasher.finish() == expected.digest {
                BodyEnd::Complete
            } else {
                BodyEnd::ChecksumMismatch
            }
        }
        (end, _, _) => end,
    }
}

/// The store's backend.
///
/// Every S3 call below is boxed: the SDK's futures run to tens of KiB, and unboxed they set
/// the size of the dispatching future, and of every future that holds one up to the upload
/// session's, for the disk store too. Each move of those futures copied them: callgrind put
/// a quarter of a small disk PATCH's instructions in `memcpy`. A box per S3 request is
/// nothing beside the request.
pub enum StoreBackend {
    Disk(DiskStore),
    S3(S3Store),
}

/// The store: a backend, with every operation counted and timed for `/metrics`
/// (`hoist_store_operations_total{backend,operation,outcome}`,
/// `hoist_store_operation_duration_seconds{backend,operation}`).
pub struct Store {
    backend: StoreBackend,
    metrics: Option<Arc<Metrics>>,
}

impl Store {
    pub fn new(backend: StoreBackend, metrics: Option<Arc<Metrics>>) -> Store {
        Store { backend, metrics }
    }

    pub fn backend(&self) -> &StoreBackend {
        &self.backend
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            StoreBackend::Disk(_) => "disk",
            StoreBackend::S3(_) => "s3",
        }
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = work.await;
        if let Some(metrics) = &self.metrics {
            let backend = self.backend_name();
            let outcome = if result.is_ok() { "ok" } else { "error" };
            metrics.store_operations.with_label_values(&[backend, operation, outcome]).inc();
            metrics.store_duration.with_label_values(&[backend, operation]).observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// The object key of an upload (the database stores keys, never URLs).
    pub fn key_for(&self, id: &crate::domain::UploadId) -> String {
        match &self.backend {
            StoreBackend::Disk(_) => id.to_string(),
            StoreBackend::S3(s3) => s3.key_for(id.as_str()),
        }
    }

    /// The part size an upload of `length` gets (S3; disk has no parts).
    pub fn part_size_for(&self, length: Option<u64>, max_size: u64) -> u64 {
        match &self.backend {
            StoreBackend::Disk(_) => 0,
            StoreBackend::S3(s3) => part_size_for(length, s3.preferred_part_size(), max_size),
        }
    }

    /// Creates what an upload of `length` (None: deferred) appends to.
    pub async fn create(
        &self,
        key: &str,
        length: Option<u64>,
        max_size: u64,
        headers: &ObjectHeaders,
    ) -> Result<CreatedObject, StoreError> {
        self.observe("create", async {
            match &self.backend {
                StoreBackend::Disk(disk) => {
                    disk.create(key).await.map(|()| CreatedObject { multipart_id: None, part_size: None })
                }
                StoreBackend::S3(s3) => Box::pin(s3.create(key, length, max_size, headers)).await,
            }
        })
        .await
    }

    /// Streams `body` into the upload at `target.offset`, at most `max_bytes`, verifying
    /// `checksum` if given, and makes what it keeps durable before returning.
    ///
    /// A backend whose last step runs on a blocking thread (disk) runs `on_durable` there,
    /// right after the bytes are durable, and returns its result: the caller's commit then
    /// costs no thread hand-off of its own (two wake-ups per PATCH). The S3 backend returns
    /// None: its last step is a network call, and completing an upload there takes one more
    /// (CompleteMultipartUpload) before the commit. On disk, the `append` duration in the
    /// metrics includes that commit.
    pub async fn append<T, F>(
        &self,
        target: &AppendTarget,
        body: &mut BodyReceiver,
        max_bytes: u64,
        checksum: Option<&Checksum>,
        on_durable: F,
    ) -> Result<(AppendOutcome, Option<T>), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&AppendOutcome) -> T + Send + 'static,
    {
        self.observe("append", async {
            match &self.backend {
                StoreBackend::Disk(disk) => disk
                    .append(target, body, max_bytes, checksum, on_durable)
                    .await
                    .map(|(outcome, settled)| (outcome, Some(settled))),
                // Boxed, as every S3 call here: see `StoreBackend`.
                StoreBackend::S3(s3) => {
                    Box::pin(s3.append(target, body, max_bytes, checksum)).await.map(|outcome| (outcome, None))
                }
            }
        })
        .await
    }

    /// Turns a fully uploaded object into the final one (S3: CompleteMultipartUpload with
    /// the recorded parts).
    pub async fn finish(&self, target: &AppendTarget, parts: &[UploadedPart]) -> Result<(), StoreError> {
        self.observe("finish", async {
            match &self.backend {
                StoreBackend::Disk(_) => Ok(()),
                StoreBackend::S3(s3) => Box::pin(s3.finish(target, parts)).await,
            }
        })
        .await
    }

    /// Removes staged objects that committed parts replaced (best effort).
    pub async fn forget(&self, keys: Vec<String>) {
        if let StoreBackend::S3(s3) = &self.backend {
            Box::pin(s3.delete_keys(keys)).await;
        }
    }

    /// Writes the concatenation of the complete uploads `sources` (with their sizes) into a
    /// new complete object `dest`; returns its size.
    pub async fn concatenate(
        &self,
        sources: Vec<(String, u64)>,
        dest: &str,
        part_size: u64,
        headers: &ObjectHeaders,
    ) -> Result<u64, StoreError> {
        self.observe("concatenate", async {
            match &self.backend {
                StoreBackend::Disk(disk) => disk.concatenate(sources.into_iter().map(|(k, _)| k).collect(), dest).await,
                StoreBackend::S3(s3) => Box::pin(s3.concatenate(sources, dest, part_size, headers)).await,
            }
        })
        .await
    }

    /// Deletes everything of an upload: object, staged tail, unfinished multipart upload.
    pub async fn delete(&self, key: &str, multipart_id: Option<&str>) -> Result<(), StoreError> {
        self.observe("delete", async {
            match &self.backend {
                StoreBackend::Disk(disk) => disk.delete(key).await,
                StoreBackend::S3(s3) => Box::pin(s3.delete(key, multipart_id)).await,
            }
        })
        .await
    }

    pub async fn download(
        &self,
        key: &str,
        filename: Option<&str>,
        content_type: &str,
        ttl: Duration,
    ) -> Result<Download, StoreError> {
        self.observe("download", async {
            match &self.backend {
                StoreBackend::Disk(disk) => Ok(Download::LocalFile(disk.path(key))),
                StoreBackend::S3(s3) => {
                    Box::pin(s3.presign(key, filename, content_type, ttl)).await.map(Download::Redirect)
                }
            }
        })
        .await
    }

    /// A local file for the object, when the backend has one (the disk store's downloads).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        match &self.backend {
            StoreBackend::Disk(disk) => Some(disk.path(key)),
            StoreBackend::S3(_) => None,
        }
    }

    /// Whether anything of the upload is still stored (tests and the janitor's checks).
    pub async fn holds_anything(&self, key: &str) -> Result<bool, StoreError> {
        self.observe("holds_anything", async {
            match &self.backend {
                StoreBackend::Disk(disk) => Ok(disk.path(key).exists()),
                StoreBackend::S3(s3) => Box::pin(s3.holds_anything(key)).await,
            }
        })
        .await
    }

    /// Readiness: the store answers.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.observe("check", async {
            match &self.backend {
                StoreBackend::Disk(disk) => disk.check().await,
                StoreBackend::S3(s3) => Box::pin(s3.check()).await,
            }
        })
        .await
    }
}
