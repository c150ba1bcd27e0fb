//! Where upload bytes live. One enum over the backends keeps native async fns without
//! boxing; the S3 backend joins the disk one here.

mod body;
mod disk;

use std::path::PathBuf;

pub use body::{body_channel, BodyEvent, BodyReceiver, BodySender};
pub use disk::DiskStore;

use crate::domain::Hasher;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// How an append's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// The client sent the whole body.
    Complete,
    /// The client went away or the body stalled; what arrived was written.
    Interrupted,
    /// The body went past the allowed size; nothing of this append was kept.
    TooLarge,
}

pub struct AppendOutcome {
    /// Bytes written durably (0 when `end` is `TooLarge`).
    pub written: u64,
    pub end: BodyEnd,
    pub digest: Option<Vec<u8>>,
}

pub enum Store {
    Disk(DiskStore),
}

impl Store {
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Disk(_) => "disk",
        }
    }

    /// Creates the empty object an upload appends to.
    pub async fn create(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Disk(disk) => disk.create(key).await,
        }
    }

    /// Streams `body` into the object at `offset`, at most `max_bytes`, hashing it with
    /// `hasher` if given, and makes what it wrote durable before returning.
    pub async fn append(
        &self,
        key: &str,
        offset: u64,
        body: &mut BodyReceiver,
        max_bytes: u64,
        hasher: Option<Hasher>,
    ) -> Result<AppendOutcome, StoreError> {
        match self {
            Store::Disk(disk) => disk.append(key, offset, body, max_bytes, hasher).await,
        }
    }

    /// Drops everything past `offset` (a rejected chunk).
    pub async fn truncate(&self, key: &str, offset: u64) -> Result<(), StoreError> {
        match self {
            Store::Disk(disk) => disk.truncate(key, offset).await,
        }
    }

    /// Writes the concatenation of `sources` into a new object `dest`; returns its size.
    pub async fn concatenate(&self, sources: Vec<String>, dest: &str) -> Result<u64, StoreError> {
        match self {
            Store::Disk(disk) => disk.concatenate(sources, dest).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Disk(disk) => disk.delete(key).await,
        }
    }

    /// A local file for the object, when the backend has one (downloads stream it).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        match self {
            Store::Disk(disk) => Some(disk.path(key)),
        }
    }

    /// Readiness: the store answers.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Disk(disk) => disk.check().await,
        }
    }
}
