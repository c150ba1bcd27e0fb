//! The S3 store (DESIGN.md section 3): one upload is one multipart upload with a part size
//! fixed at creation. A full part goes to `UploadPart` as soon as it is full; bytes that do
//! not fill one are staged as small objects `<key>.staged/<start offset>` (durable, so any
//! process can resume) and folded into the next part, each staged byte read back once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;

use super::spool::Spool;
use super::{checksum_verdict, AppendOutcome, AppendTarget, BodyEnd, BodyEvent, BodyReceiver, CreatedObject};
use super::{ObjectHeaders, StoreError, UploadedPart};
use crate::config::S3StoreSettings;
use crate::domain::Checksum;

const MIB: u64 = 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// S3's smallest non-final part.
const MIN_PART: u64 = 5 * MIB;

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
    spool_dir: PathBuf,
    staged_bytes_read: AtomicU64,
    staged_bytes_written: AtomicU64,
}

/// A staged object holding bytes `[start, start + size)` of the upload.
struct Segment {
    key: String,
    start: u64,
    size: u64,
}

fn s3_error<E>(operation: &str, err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> StoreError
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

fn staged_prefix(key: &str) -> String {
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
                &settings.secret_access_key,
                None,
                None,
                "hoist-config",
            ));
        }
        let spool_dir =
            if settings.spool_dir.is_empty() { std::env::temp_dir() } else { PathBuf::from(&settings.spool_dir) };
        std::fs::create_dir_all(&spool_dir)?;
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            preferred_part_size: settings.preferred_part_size,
            spool_dir,
            staged_bytes_read: AtomicU64::new(0),
            staged_bytes_written: AtomicU64::new(0),
        })
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

    pub async fn append(
        &self,
        target: &AppendTarget,
        body: &mut BodyReceiver,
        max_bytes: u64,
        checksum: Option<&Checksum>,
    ) -> Result<AppendOutcome, StoreError> {
        let part_size = target.part_size.ok_or_else(|| StoreError::Rejected("upload has no part size".into()))?;
        let upload_id = target
            .multipart_id
            .as_deref()
            .ok_or_else(|| StoreError::Rejected("upload has no multipart upload".into()))?;
        let mut part_number =
            i32::try_from(target.offset / part_size + 1).map_err(|_| StoreError::Rejected("too many parts".into()))?;
        let mut staged_len = target.offset % part_size;
        let mut part_start = target.offset - staged_len;
        let mut spool = Spool::new(&self.spool_dir).await?;
        let mut hasher = checksum.map(|c| c.algorithm.hasher());
        let (mut written, mut parts, mut superseded) = (0u64, Vec::new(), Vec::new());

        let end = loop {
            let chunk = match body.next().await {
                BodyEvent::Data(chunk) => chunk,
                BodyEvent::End => break BodyEnd::Complete,
                BodyEvent::Failed => break BodyEnd::Interrupted,
            };
            if written + chunk.len() as u64 > max_bytes {
                break BodyEnd::TooLarge;
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let room = usize::try_from(part_size - staged_len - spool.len()).unwrap_or(usize::MAX);
                let take = room.min(rest.len());
                spool.write(&rest[..take]).await?;
                rest = &rest[take..];
                written += take as u64;
                if staged_len + spool.len() == part_size {
                    let (part, folded) = self
                        .upload_part(&target.key, upload_id, part_number, part_start, staged_len, &mut spool)
                        .await?;
                    parts.push(part);
                    superseded.extend(folded);
                    part_number += 1;
                    part_start += part_size;
                    staged_len = 0;
                    spool.reset().await?;
                }
            }
        };

        let end = checksum_verdict(end, checksum, hasher);
        if matches!(end, BodyEnd::TooLarge | BodyEnd::ChecksumMismatch)
            || (end == BodyEnd::Interrupted && checksum.is_some())
        {
            // Nothing is recorded; parts uploaded meanwhile are uploaded again on retry.
            return Ok(AppendOutcome { written: 0, end, parts: Vec::new(), superseded: Vec::new() });
        }
        let new_offset = target.offset + written;
        if target.length == Some(new_offset) {
            // The final part; for a deferred upload that ended empty, an empty part 1, since
            // a multipart upload cannot complete without parts.
            if staged_len + spool.len() > 0 || new_offset == 0 {
                let (part, folded) =
                    self.upload_part(&target.key, upload_id, part_number, part_start, staged_len, &mut spool).await?;
                parts.push(part);
                superseded.extend(folded);
            }
        } else if !spool.is_empty() {
            // The tail that does not fill a part: durable in S3 before it is acknowledged.
            spool.sync_for_read().await?;
            let start = new_offset - spool.len();
            let key = format!("{}{start:020}", staged_prefix(&target.key));
            let body = ByteStream::read_from()
                .path(spool.path())
                .length(Length::Exact(spool.len()))
                .build()
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_length(spool.len() as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("PutObject (staged)", e))?;
            self.staged_bytes_written.fetch_add(spool.len(), Ordering::Relaxed);
        }
        Ok(AppendOutcome { written, end, parts, superseded })
    }

    /// Uploads part `number`: the staged bytes `[part_start, part_start + staged_len)` read
    /// back once, followed by the spool. Returns the part and the staged keys it replaced.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        part_start: u64,
        staged_len: u64,
        spool: &mut Spool,
    ) -> Result<(UploadedPart, Vec<String>), StoreError> {
        let mut assembled;
        let (source, folded) = if staged_len == 0 {
            (spool, Vec::new())
        } else {
            let segments = self.staged_segments(key, part_start, part_start + staged_len).await?;
            assembled = Spool::new(&self.spool_dir).await?;
            for segment in &segments {
                let take = segment.size.min(part_start + staged_len - segment.start);
                let object = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(&segment.key)
                    .range(format!("bytes=0-{}", take - 1))
                    .send()
                    .await
                    .map_err(|e| s3_error("GetObject (staged)", e))?;
                let mut stream = object.body;
                while let Some(bytes) = stream.try_next().await.map_err(|e| StoreError::Unavailable(e.to_string()))? {
                    assembled.write(&bytes).await?;
                    self.staged_bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            }
            assembled.append_from(spool).await?;
            (&mut assembled, segments.into_iter().map(|s| s.key).collect())
        };
        source.sync_for_read().await?;
        let size = source.len();
        let body = ByteStream::read_from()
            .path(source.path())
            .length(Length::Exact(size))
            .build()
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error("UploadPart", e))?;
        let etag = uploaded.e_tag().ok_or_else(|| StoreError::Rejected("UploadPart returned no ETag".into()))?;
        Ok((UploadedPart { number, size: size as i64, etag: etag.to_owned() }, folded))
    }

    /// The staged objects covering exactly `[from, to)`, in order.
    async fn staged_segments(&self, key: &str, from: u64, to: u64) -> Result<Vec<Segment>, StoreError> {
        let prefix = staged_prefix(key);
        let mut segments: Vec<Segment> = self
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|(object, size)| {
                let start = object.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                Some(Segment { key: object, start, size })
            })
            .filter(|s| s.start >= from && s.start < to)
            .collect();
        segments.sort_by_key(|s| s.start);
        let mut cursor = from;
        for segment in &segments {
            if segment.start != cursor {
                return Err(StoreError::Rejected(format!("staged bytes of {key} missing at {cursor}")));
            }
            cursor += segment.size.min(to - segment.start);
        }
        if cursor != to {
            return Err(StoreError::Rejected(format!("staged bytes of {key} end at {cursor}, not {to}")));
        }
        Ok(segments)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut objects = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("ListObjectsV2", e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    objects.push((key.to_owned(), object.size().unwrap_or(0).max(0) as u64));
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
        let staged = self.list(&staged_prefix(&target.key)).await.unwrap_or_default();
        self.delete_keys(staged.into_iter().map(|(k, _)| k).collect()).await;
        Ok(())
    }

    /// Best-effort deletion (staged leftovers); failures leave garbage for the janitor,
    /// never a wrong answer.
    pub async fn delete_keys(&self, keys: Vec<String>) {
        for key in keys {
            let _ = self.client.delete_object().bucket(&self.bucket).key(key).send().await;
        }
    }

    pub async fn delete(&self, key: &str, multipart_id: Option<&str>) -> Result<(), StoreError> {
        if let Some(id) = multipart_id {
            match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(id).send().await {
                Ok(_) => {}
                Err(err) => match s3_error("AbortMultipartUpload", err) {
                    StoreError::NotFound(_) => {}
                    other => return Err(other),
                },
            }
        }
        let staged = self.list(&staged_prefix(key)).await?;
        self.delete_keys(staged.into_iter().map(|(k, _)| k).collect()).await;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", e))?;
        Ok(())
    }

    /// Joins complete objects into `dest`: `UploadPartCopy` when every part but the last is
    /// at least 5 MiB (S3 does the copying), else a streamed copy through the spool.
    pub async fn concatenate(
        &self,
        sources: Vec<(String, u64)>,
        dest: &str,
        part_size: u64,
        headers: &ObjectHeaders,
    ) -> Result<u64, StoreError> {
        let total: u64 = sources.iter().map(|(_, size)| size).sum();
        if total == 0 {
            self.create(dest, Some(0), 0, headers).await?;
            return Ok(0);
        }
        let created = self.create(dest, Some(total), total, headers).await?;
        let upload_id = created.multipart_id.ok_or_else(|| StoreError::Rejected("no multipart upload".into()))?;
        let copyable = sources.iter().rev().skip(1).all(|(_, size)| *size >= MIN_PART)
            && sources.iter().all(|(_, size)| *size > 0 && *size <= 5 * 1024 * MIB);
        let mut parts = Vec::new();
        let result = if copyable {
            self.copy_parts(&sources, dest, &upload_id, &mut parts).await
        } else {
            self.stream_parts(&sources, dest, &upload_id, part_size, &mut parts).await
        };
        let target = AppendTarget {
            key: dest.to_owned(),
            offset: total,
            length: Some(total),
            part_size: Some(part_size),
            multipart_id: Some(upload_id.clone()),
        };
        match result {
            Ok(()) => self.finish(&target, &parts).await.map(|()| total),
            Err(err) => {
                let _ = self.delete(dest, Some(&upload_id)).await;
                Err(err)
            }
        }
    }

    async fn copy_parts(
        &self,
        sources: &[(String, u64)],
        dest: &str,
        upload_id: &str,
        parts: &mut Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        for (index, (source, size)) in sources.iter().enumerate() {
            let number = index as i32 + 1;
            let copied = self
                .client
                .upload_part_copy()
                .bucket(&self.bucket)
                .key(dest)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(format!("{}/{source}", self.bucket))
                .send()
                .await
                .map_err(|e| s3_error("UploadPartCopy", e))?;
            let etag = copied
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .ok_or_else(|| StoreError::Rejected("UploadPartCopy returned no ETag".into()))?;
            parts.push(UploadedPart { number, size: *size as i64, etag: etag.to_owned() });
        }
        Ok(())
    }

    async fn stream_parts(
        &self,
        sources: &[(String, u64)],
        dest: &str,
        upload_id: &str,
        part_size: u64,
        parts: &mut Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        let mut spool = Spool::new(&self.spool_dir).await?;
        let mut number = 1;
        for (source, _) in sources {
            let object = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(source)
                .send()
                .await
                .map_err(|e| s3_error("GetObject", e))?;
            let mut stream = object.body;
            while let Some(bytes) = stream.try_next().await.map_err(|e| StoreError::Unavailable(e.to_string()))? {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let take = usize::try_from(part_size - spool.len()).unwrap_or(usize::MAX).min(rest.len());
                    spool.write(&rest[..take]).await?;
                    rest = &rest[take..];
                    if spool.len() == part_size {
                        parts.push(self.upload_part(dest, upload_id, number, 0, 0, &mut spool).await?.0);
                        number += 1;
                        spool.reset().await?;
                    }
                }
            }
        }
        if !spool.is_empty() {
            parts.push(self.upload_part(dest, upload_id, number, 0, 0, &mut spool).await?.0);
        }
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

    /// Aborts an orphaned multipart upload and its staged tail (not the key's object).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(upload_id).send().await {
            Ok(_) => {}
            Err(err) => match s3_error("AbortMultipartUpload", err) {
                StoreError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        let staged = self.list(&staged_prefix(key)).await?;
        self.delete_keys(staged.into_iter().map(|(k, _)| k).collect()).await;
        Ok(())
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| s3_error("HeadBucket", e))?;
        Ok(())
    }
}
