//! What S3 holds of an upload, for `hoist reconcile`.

use super::{s3_error, staged_prefix, S3Store};
use crate::store::{StoreError, UploadedPart};

/// A staged tail object: bytes `[start, start + size)` of the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedObject {
    pub key: String,
    pub start: u64,
    pub size: u64,
    /// As listed (quoted, as S3 sends it).
    pub etag: String,
}

impl S3Store {
    /// The parts of a multipart upload in number order; None if the upload no longer exists
    /// (completed or aborted).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<UploadedPart>>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(err) => match s3_error("ListParts", err) {
                    StoreError::NotFound(_) => return Ok(None),
                    other => return Err(other),
                },
            };
            for part in page.parts() {
                let (Some(number), Some(etag)) = (part.part_number(), part.e_tag()) else { continue };
                parts.push(UploadedPart { number, size: part.size().unwrap_or(0), etag: etag.to_owned() });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            marker = page.next_part_number_marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(Some(parts))
    }

    /// The size of the finished object at `key`, if there is one.
    pub async fn object_size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(err) => match s3_error("HeadObject", err) {
                StoreError::NotFound(_) => Ok(None),
                // HeadObject has no body, so a missing key can surface without an error code.
                StoreError::Rejected(detail) if detail.contains("404") || detail.contains("NotFound") => Ok(None),
                other => Err(other),
            },
        }
    }

    /// The staged tail objects of an upload, by start offset.
    pub async fn staged_objects(&self, key: &str) -> Result<Vec<StagedObject>, StoreError> {
        let prefix = staged_prefix(key);
        let mut staged: Vec<StagedObject> = self
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|object| {
                let start = object.key.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                Some(StagedObject { start, key: object.key, size: object.size, etag: object.etag })
            })
            .collect();
        staged.sort_by_key(|s| s.start);
        Ok(staged)
    }
}
