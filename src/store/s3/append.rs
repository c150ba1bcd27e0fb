//! Appends on S3: full parts go to `UploadPart` at once, the rest is staged.

use std::sync::atomic::Ordering;

use aws_sdk_s3::primitives::{ByteStream, Length};
use futures_util::StreamExt;

use super::{s3_error, staged_prefix, S3Store, StagedObject};
use crate::domain::Checksum;
use crate::store::spool::Spool;
use crate::store::{checksum_verdict, AppendOutcome, AppendTarget, BodyEnd, BodyEvent, BodyReceiver};
use crate::store::{StoreError, UploadedPart};

/// Bytes the SDK reads from a spool file at a time for a request body.
///
/// The SDK's default (64 KiB) is held twice per body in flight (tokio's file buffer and the
/// chunk on its way to the socket): with 50 uploads at once, each sending a part or a staged
/// tail, that was 3-4 MiB of benchmark scenario 2's peak on S3 (alternating runs: 67.8-69.7
/// MiB before, 64.1-65.6 after). The emulator or S3, not these reads, bounds the rate.
const SPOOL_READ_BYTES: usize = 16 * 1024;

/// Staged objects a read-back requests ahead of the one it is reading.
const READ_BACK_AHEAD: usize = 8;

/// The spool's bytes as a request body, streamed from its file.
async fn spool_body(spool: &Spool) -> Result<ByteStream, StoreError> {
    ByteStream::read_from()
        .path(spool.path())
        .length(Length::Exact(spool.len()))
        .buffer_size(SPOOL_READ_BYTES)
        .build()
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))
}

impl S3Store {
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
        let mut spool = Spool::new(self.spool_dir()).await?;
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
            let mut at = 0;
            while at < chunk.len() {
                let room = usize::try_from(part_size - staged_len - spool.len()).unwrap_or(usize::MAX);
                let take = room.min(chunk.len() - at);
                spool.write(chunk.slice(at..at + take)).await?;
                at += take;
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
            let start = new_offset - spool.len();
            let key = format!("{}{start:020}", staged_prefix(&target.key));
            let body = spool_body(&spool).await?;
            let staged = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_length(spool.len() as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("PutObject (staged)", e))?;
            self.staged_bytes_written.fetch_add(spool.len(), Ordering::Relaxed);
            let etag = staged.e_tag().unwrap_or_default().to_owned();
            let object = StagedObject { key, start, size: spool.len(), etag };
            self.tails.record(&target.key, part_start, object, &mut spool).await;
        }
        Ok(AppendOutcome { written, end, parts, superseded })
    }

    /// Uploads part `number`: the staged bytes `[part_start, part_start + staged_len)`, from
    /// this node's copy of them or else read back once, followed by the spool. Returns the
    /// part and the staged keys it replaced.
    pub(super) async fn upload_part(
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
            // Whatever copy there is holds an earlier part's tail.
            self.tails.forget(key);
            (spool, Vec::new())
        } else {
            let segments = self.staged_segments(key, part_start, part_start + staged_len).await?;
            assembled = match self.tails.take_matching(key, part_start, staged_len, &segments).await {
                Some(copy) => copy,
                None => self.read_back(&segments, part_start + staged_len).await?,
            };
            assembled.append_from(spool).await?;
            (&mut assembled, segments.into_iter().map(|s| s.key).collect())
        };
        let size = source.len();
        let body = spool_body(source).await?;
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

    /// The staged `segments` up to `to`, fetched from S3 into a new spool.
    ///
    /// Up to [`READ_BACK_AHEAD`] GETs are in flight at once, their bodies read in order: a
    /// part's tail on a node that did not stage it (a takeover, a restart) may be a hundred
    /// small objects, and one GET after another paid S3's first-byte latency for each. A
    /// response waits with its body unread (in the connection's socket buffer) until its
    /// turn, so memory stays bounded by buffers, not by the objects.
    async fn read_back(&self, segments: &[StagedObject], to: u64) -> Result<Spool, StoreError> {
        let mut assembled = Spool::new(self.spool_dir()).await?;
        let mut responses = futures_util::stream::iter(segments.iter().map(|segment| {
            let take = segment.size.min(to - segment.start);
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(&segment.key)
                .range(format!("bytes=0-{}", take - 1))
                .send()
        }))
        .buffered(READ_BACK_AHEAD);
        while let Some(object) = responses.next().await {
            let mut stream = object.map_err(|e| s3_error("GetObject (staged)", e))?.body;
            while let Some(bytes) = stream.try_next().await.map_err(|e| StoreError::Unavailable(e.to_string()))? {
                self.staged_bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                assembled.write(bytes).await?;
            }
        }
        Ok(assembled)
    }

    /// The staged objects covering exactly `[from, to)`, in order.
    async fn staged_segments(&self, key: &str, from: u64, to: u64) -> Result<Vec<StagedObject>, StoreError> {
        let segments: Vec<StagedObject> =
            self.staged_objects(key).await?.into_iter().filter(|s| s.start >= from && s.start < to).collect();
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
}
