//! Concatenation on S3: `UploadPartCopy` where S3 can copy, a streamed copy otherwise.

use super::{s3_error, S3Store, MIB, MIN_PART};
use crate::store::spool::Spool;
use crate::store::{AppendTarget, ObjectHeaders, StoreError, UploadedPart};

impl S3Store {
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
        let mut spool = Spool::new(self.spool_dir()).await?;
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
                let mut at = 0;
                while at < bytes.len() {
                    let take = usize::try_from(part_size - spool.len()).unwrap_or(usize::MAX).min(bytes.len() - at);
                    spool.write(bytes.slice(at..at + take)).await?;
                    at += take;
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
}
