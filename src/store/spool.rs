//! A local temporary file that holds the bytes of one S3 part while it is assembled, so a
//! part (8 MiB or more) never sits in memory. Deleted when dropped.
//!
//! Writes hand the chunk itself (`Bytes`, shared, not copied) to a blocking thread, which
//! writes it and drops it. tokio's `File` copied every write into a buffer of its own first
//! and kept that buffer for the file's life: even capped at 128 KiB, with 50 uploads at once
//! (a spool each, two while a part is assembled) those buffers were 12.6 of the 40 MiB of
//! heap at the peak of benchmark scenario 2 on S3 (heaptrack).
//!
//! A spool holds one descriptor while it is written; one kept for later (a node's copy of an
//! upload's staged tail, which may wait an hour for the upload's next PATCH) is parked, with
//! its file closed, so that open uploads do not each hold a descriptor: with two per copy,
//! benchmark scenario 4 on S3 (10,000 uploads left open mid-way) ran out of descriptors
//! (`EMFILE`, answered 503) at the 20,000 the machine allows.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tempfile::TempPath;

pub struct Spool {
    /// Shared with the blocking thread doing the current write (`&File` writes).
    file: Arc<File>,
    /// Deletes the file when dropped; holds no descriptor.
    path: TempPath,
    len: u64,
}

/// A spool with its file closed: the bytes stay on disk (deleted when this is dropped), and
/// no descriptor is held until [`ParkedSpool::reopen`].
pub struct ParkedSpool {
    path: TempPath,
    len: u64,
}

impl ParkedSpool {
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The spool again, its next write going after the bytes it held.
    pub async fn reopen(self) -> std::io::Result<Spool> {
        let ParkedSpool { path, len } = self;
        let (file, path) = blocking(move || {
            let mut file = OpenOptions::new().write(true).open(&path)?;
            file.seek(std::io::SeekFrom::Start(len))?;
            Ok((file, path))
        })
        .await?;
        Ok(Spool { file: Arc::new(file), path, len })
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other)?
}

impl Spool {
    pub async fn new(dir: &Path) -> std::io::Result<Spool> {
        let dir = dir.to_path_buf();
        let (file, path) = blocking(move || Ok(tempfile::NamedTempFile::new_in(dir)?.into_parts())).await?;
        Ok(Spool { file: Arc::new(file), path, len: 0 })
    }

    /// Closes the file, keeping its bytes (see [`ParkedSpool`]).
    pub fn park(self) -> ParkedSpool {
        ParkedSpool { path: self.path, len: self.len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`; once this returns they are in the file.
    pub async fn write(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        let file = self.file.clone();
        blocking(move || (&*file).write_all(&bytes)).await?;
        self.len += len;
        Ok(())
    }

    /// Appends another spool's bytes (local disk to local disk).
    pub async fn append_from(&mut self, other: &mut Spool) -> std::io::Result<()> {
        let (file, source) = (self.file.clone(), other.path().to_path_buf());
        let copied = blocking(move || std::io::copy(&mut File::open(source)?, &mut &*file)).await?;
        self.len += copied;
        Ok(())
    }

    /// The file, for readers: every write has reached it once `write` returned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn reset(&mut self) -> std::io::Result<()> {
        let file = self.file.clone();
        blocking(move || {
            file.set_len(0)?;
            // The file is not in append mode: the next write must start at the beginning
            // again.
            (&*file).seek(std::io::SeekFrom::Start(0))?;
            Ok(())
        })
        .await?;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_holds_what_was_written_across_resets_and_appends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::new(dir.path()).await.expect("spool");
        spool.write(Bytes::from_static(b"stale bytes")).await.expect("write");
        spool.reset().await.expect("reset");
        assert!(spool.is_empty());
        spool.write(Bytes::from_static(b"part ")).await.expect("write");
        let mut other = Spool::new(dir.path()).await.expect("other spool");
        other.write(Bytes::from_static(b"one")).await.expect("write");
        spool.append_from(&mut other).await.expect("append");
        assert_eq!(spool.len(), 8);
        assert_eq!(std::fs::read(spool.path()).expect("read back"), b"part one");
    }

    #[tokio::test]
    async fn a_parked_spool_keeps_its_bytes_and_appends_after_them_when_reopened() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::new(dir.path()).await.expect("spool");
        spool.write(Bytes::from_static(b"kept ")).await.expect("write");
        let parked = spool.park();
        assert_eq!(parked.len(), 5);
        let mut spool = parked.reopen().await.expect("reopen");
        spool.write(Bytes::from_static(b"and more")).await.expect("write");
        assert_eq!(spool.len(), 13);
        assert_eq!(std::fs::read(spool.path()).expect("read back"), b"kept and more");
        let path = spool.path().to_path_buf();
        drop(spool.park());
        assert!(!path.exists(), "a dropped parked spool deletes its file");
    }
}
