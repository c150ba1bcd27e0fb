//! The disk store: one file per upload under `root/xx/<id>`. Appends stream through a
//! small batch buffer on the blocking pool and are fsynced before they are acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{AppendOutcome, AppendTarget, BodyEnd, BodyEvent, BodyReceiver, StoreError};
use crate::domain::{Checksum, Hasher};

/// Bytes gathered before one write call on the blocking pool.
const WRITE_BATCH: usize = 512 * 1024;

pub struct DiskStore {
    root: PathBuf,
    fsync: bool,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(StoreError::Io)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskStore {
    pub fn new(root: PathBuf, fsync: bool) -> std::io::Result<DiskStore> {
        std::fs::create_dir_all(&root)?;
        Ok(DiskStore { root, fsync })
    }

    /// Keys are upload ids (validated hex), sharded by their first two characters.
    pub fn path(&self, key: &str) -> PathBuf {
        let shard = key.get(..2).unwrap_or("00");
        self.root.join(shard).join(key)
    }

    pub async fn create(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        let fsync = self.fsync;
        blocking(move || {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&dir)?;
            let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
            if fsync {
                file.sync_all()?;
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn append(
        &self,
        target: &AppendTarget,
        body: &mut BodyReceiver,
        max_bytes: u64,
        checksum: Option<&Checksum>,
    ) -> Result<AppendOutcome, StoreError> {
        let offset = target.offset;
        let has_checksum = checksum.is_some();
        let mut hasher: Option<Hasher> = checksum.map(|c| c.algorithm.hasher());
        let path = self.path(&target.key);
        let not_found = target.key.clone();
        let mut file = blocking(move || {
            let mut file = OpenOptions::new().write(true).open(&path)?;
            // Bytes past the committed offset were never acknowledged (a crash between
            // write and commit): drop them before appending.
            if file.metadata()?.len() != offset {
                file.set_len(offset)?;
            }
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        })
        .await
        .map_err(|e| match e {
            StoreError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => StoreError::NotFound(not_found),
            other => other,
        })?;

        let mut written: u64 = 0;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len: usize = 0;
        let end = loop {
            let event = body.next().await;
            let (chunk, end) = match event {
                BodyEvent::Data(chunk) => (Some(chunk), None),
                BodyEvent::End => (None, Some(BodyEnd::Complete)),
                BodyEvent::Failed => (None, Some(BodyEnd::Interrupted)),
            };
            if let Some(chunk) = chunk {
                if written + batch_len as u64 + chunk.len() as u64 > max_bytes {
                    break BodyEnd::TooLarge;
                }
                batch_len += chunk.len();
                batch.push(chunk);
            }
            if batch_len >= WRITE_BATCH || (end.is_some() && batch_len > 0) {
                let pending = std::mem::take(&mut batch);
                let mut h = hasher.take();
                let (f, h) = blocking(move || {
                    for chunk in &pending {
                        file.write_all(chunk)?;
                        if let Some(h) = h.as_mut() {
                            h.update(chunk);
                        }
                    }
                    Ok((file, h))
                })
                .await?;
                file = f;
                hasher = h;
                written += batch_len as u64;
                batch_len = 0;
            }
            if let Some(end) = end {
                break end;
            }
        };

        let end = super::checksum_verdict(end, checksum, hasher);
        let fsync = self.fsync;
        let written = blocking(move || {
            if matches!(end, BodyEnd::TooLarge | BodyEnd::ChecksumMismatch)
                || (end == BodyEnd::Interrupted && has_checksum)
            {
                // Nothing of a rejected chunk is kept.
                file.set_len(offset)?;
                return Ok(0);
            }
            if fsync {
                file.sync_data()?;
            }
            Ok(written)
        })
        .await?;
        Ok(AppendOutcome { written, end, parts: Vec::new(), superseded: Vec::new() })
    }

    pub async fn concatenate(&self, sources: Vec<String>, dest: &str) -> Result<u64, StoreError> {
        let sources: Vec<PathBuf> = sources.iter().map(|k| self.path(k)).collect();
        let dest = self.path(dest);
        let fsync = self.fsync;
        blocking(move || {
            let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&dir)?;
            let mut out = OpenOptions::new().write(true).create_new(true).open(&dest)?;
            let mut total = 0;
            for source in &sources {
                total += std::io::copy(&mut File::open(source)?, &mut out)?;
            }
            if fsync {
                out.sync_all()?;
                sync_dir(&dir)?;
            }
            Ok(total)
        })
        .await
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || std::fs::metadata(&root).map(|_| ())).await
    }
}
