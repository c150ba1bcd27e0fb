//! The S3 store (DESIGN.md section 3): one upload is one multipart upload with a part size
//! fixed at creation. A full part goes to `UploadPart` as soon as it is full; bytes that do
//! not fill one are staged as small objects `<key>.staged/<start offset>` (durable, so any
//! process can resume) and folded into the next part, each staged byte read back once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use super::{AppendTarget, CreatedObject, ObjectHeaders, StoreError, UploadedPart};
use crate::config::S3StoreSettings;
use crate::store::spool_dir::SpoolDir;

mod append;
mod concat;
mod inspect;
mod tail_copy;

pub use inspect::StagedObject;
use tail_copy::TailCopies;

pub(super) const MIB: u64 = 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// S3's smallest non-final part.
pub(super) const MIN_PART: u64 = 5 * MIB;

/// The part size for an upload: the preferred size, or larger (in whole MiB) when the
/// length (or, deferred, the maximum size) would need more than 10,000 parts.
pub fn part_size_for(length: Option<u64>, preferred: u64, max_size: u64) -> u64 {
    let needed = length.unwrap_or(max_size).div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    preferred.max(needed).max(MIN_PART)
}

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    preferred_part_size: u64,
    /// This process's own directory under `store.s3.spool_dir`.
    spool_dir: SpoolDir,
    /// Directories that killed processes left in `store.s3.spool_dir`, removed at start-up.
    abandoned_spool_dirs: usize,
    staged_bytes_read: AtomicU64,
    staged_bytes_written: AtomicU64,
    /// This node's copies of staged tails (see [`tail_copy`]).
    tails: TailCopies,
}

/// An object as `ListObjectsV2` lists it.
pub(super) struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// `DeleteObjects` takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;

pub(super) fn s3_error<E>(operation: &str, err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = format!("{operation}: {}", DisplayErrorContext(&err));
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                Some("NoSuchKey" | "NoSuchUpload" | "NotFound") => StoreError::NotFound(detail),
                Some("SlowDown" | "InternalError" | "ServiceUnavailable") => StoreError::Unavailable(detail),
                _ if status >= 500 => StoreError::Unavailable(detail),
                _ => StoreError::Rejected(detail),
            }
        }
        _ => StoreError::Unavailable(detail),
    }
}

pub(super) fn staged_prefix(key: &str) -> String {
    format!("{key}.staged/")
}

impl S3Store {
    pub async fn connect(settings: &S3StoreSettings) -> anyhow::Result<S3Store> {
        anyhow::ensure!(!settings.bucket.is_empty(), "store.s3.bucket is required for the S3 store");
        anyhow::ensure!(settings.preferred_part_size >= 8 * MIB, "store.s3.preferred_part_size must be at least 8 MiB");
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if !settings.region.is_empty() {
            loader = loader.region(Region::new(settings.region.clone()));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            // Dropped connections and throttling are retried with backoff before a request
            // fails with 503: a PATCH is worth a few seconds of patience.
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)),
            )
            // Plain Content-MD5-free bodies: S3-compatible stores differ in their support
            // for the newer flexible checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if !settings.endpoint.is_empty() {
            builder = builder.endpoint_url(&settings.endpoint);
        }
        if !settings.access_key_id.is_empty() {
            builder = builder.credentials_provider(Credentials::new(
                &settings.access_key_id,
                settings.secret_access_key.expose(),
                None,
                None,
                "hoist-config",
            ));
        }
        let spool_root =
            if settings.spool_dir.is_empty() { std::env::temp_dir() } else { PathBuf::from(&settings.spool_dir) };
        let (spool_dir, abandoned_spool_dirs) = SpoolDir::claim(&spool_root)
            .with_context(|| format!("claiming a directory in store.s3.spool_dir {}", spool_root.display()))?;
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            preferred_part_size: settings.preferred_part_size,
            tails: TailCopies::new(settings.tail_copy_mib.saturating_mul(MIB), spool_dir.path().to_path_buf()),
            spool_dir,
            abandoned_spool_dirs,
            staged_bytes_read: AtomicU64::new(0),
            staged_bytes_written: AtomicU64::new(0),
        })
    }

    /// How many directories of killed processes this store removed when it started.
    pub fn abandoned_spool_dirs(&self) -> usize {
        self.abandoned_spool_dirs
    }

    fn spool_dir(&self) -> &Path {
        self.spool_dir.path()
    }

    pub fn key_for(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn preferred_part_size(&self) -> u64 {
        self.preferred_part_size
    }

    /// Staged bytes read back from S3 so far (each at most once: the cost stays linear).
    pub fn staged_bytes_read(&self) -> u64 {
        self.staged_bytes_read.load(Ordering::Relaxed)
    }

    pub fn staged_bytes_written(&self) -> u64 {
        self.staged_bytes_written.load(Ordering::Relaxed)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub async fn create(
        &self,
        key: &str,
        length: Option<u64>,
        max_size: u64,
        headers: &ObjectHeaders,
    ) -> Result<CreatedObject, StoreError> {
        if length == Some(0) {
            // Nothing will ever be appended: the final (empty) object exists at once.
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(&headers.content_type)
                .content_disposition(headers.content_disposition())
                .body(ByteStream::from_static(b""))
                .send()
                .await
                .map_err(|e| s3_error("PutObject", e))?;
            return Ok(CreatedObject { multipart_id: None, part_size: None });
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&headers.content_type)
            .content_disposition(headers.content_disposition())
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let id = created.upload_id().ok_or_else(|| StoreError::Rejected("no UploadId returned".into()))?;
        Ok(CreatedObject {
            multipart_id: Some(id.to_owned()),
            part_size: Some(part_size_for(length, self.preferred_part_size, max_size)),
        })
    }
    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let mut objects = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    objects.push(Listed {
                        key: key.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        etag: object.e_tag().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        Ok(objects)
    }

    pub async fn finish(&self, target: &AppendTarget, parts: &[UploadedPart]) -> Result<(), StoreError> {
        let Some(upload_id) = target.multipart_id.as_deref() else { return Ok(()) };
        let mut sorted = parts.to_vec();
        sorted.sort_by_key(|p| p.number);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                sorted.iter().map(|p| CompletedPart::builder().part_number(p.number).e_tag(&p.etag).build()).collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&target.key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        // Best effort: leftovers are garbage, never a wrong answer.
        let _ = self.delete_staged(&target.key).await;
        Ok(())
    }

    /// Best-effort deletion (staged leftovers); failures leave garbage for the janitor,
    /// never a wrong answer.
    ///
    /// One `DeleteObjects` request per thousand keys: the staged objects a part replaces are
    /// one per small PATCH before it (80 for an 8 MiB part in 100 KiB PATCHes), and one
    /// `DeleteObject` each kept the PATCH that filled the part waiting for all of them. A
    /// service that refuses the batch (some S3-compatible ones lack it) gets them one by one.
    pub async fn delete_keys(&self, keys: Vec<String>) {
        for batch in keys.chunks(DELETE_BATCH) {
            if batch.len() > 1 && self.delete_batch(batch).await {
                continue;
            }
            for key in batch {
                let _ = self.client.delete_object().bucket(&self.bucket).key(key).send().await;
            }
        }
    }

    /// Deletes `keys` in one request; false if the service refused the request itself
    /// (keys it could not delete are left, as with single deletes).
    async fn delete_batch(&self, keys: &[String]) -> bool {
        let objects: Result<Vec<ObjectIdentifier>, _> =
            keys.iter().map(|key| ObjectIdentifier::builder().key(key).build()).collect();
        let Ok(delete) = objects.and_then(|objects| Delete::builder().set_objects(Some(objects)).quiet(true).build())
        else {
            return false;
        };
        self.client.delete_objects().bucket(&self.bucket).delete(delete).send().await.is_ok()
    }

    pub async fn delete(&self, key: &str, multipart_id: Option<&str>) -> Result<(), StoreError> {
        match multipart_id {
            Some(id) => self.abort(key, id).await?,
            None => self.delete_staged(key).await?,
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", e))?;
        Ok(())
    }

    pub async fn presign(
        &self,
        key: &str,
        filename: Option<&str>,
        content_type: &str,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let config = PresigningConfig::expires_in(ttl).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let disposition = match filename {
            Some(name) => format!("attachment; filename=\"{name}\""),
            None => "attachment".to_owned(),
        };
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(content_type)
            .response_content_disposition(disposition)
            .presigned(config)
            .await
            .map_err(|e| s3_error("presign GetObject", e))?;
        Ok(request.uri().to_owned())
    }

    pub async fn holds_anything(&self, key: &str) -> Result<bool, StoreError> {
        if !self.list(key).await?.is_empty() {
            return Ok(true);
        }
        Ok(!self.multipart_uploads(key).await?.is_empty())
    }

    /// Unfinished multipart uploads under `prefix`: (key, upload id, initiated, seconds).
    pub async fn multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
                .await
                .map_err(|e| s3_error("ListMultipartUploads", e))?;
            for upload in page.uploads() {
                if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                    let initiated = upload.initiated().map(|t| t.secs()).unwrap_or(0);
                    found.push((key.to_owned(), id.to_owned(), initiated));
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(found);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
    }

    /// Aborts a multipart upload and deletes its staged tail (not the key's object).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => {}
            Err(err) => match s3_error("AbortMultipartUpload", err) {
                StoreError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        self.delete_staged(key).await
    }

    async fn delete_staged(&self, key: &str) -> Result<(), StoreError> {
        self.tails.forget(key);
        let staged = self.list(&staged_prefix(key)).await?;
        self.delete_keys(staged.into_iter().map(|object| object.key).collect()).await;
        Ok(())
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| s3_error("HeadBucket", e))?;
        Ok(())
    }
}
