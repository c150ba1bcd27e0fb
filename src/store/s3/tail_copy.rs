//! This node's copy of each upload's staged tail, so that the append that fills a part
//! reads nothing back from S3.
//!
//! A tail that does not fill a part is staged in S3 (durable, so any node can resume), one
//! object per PATCH. Without a copy, the PATCH that fills the part fetched every one of them
//! again before `UploadPart`: one GetObject per earlier small PATCH, all while its client
//! waited (80 of them for an 8 MiB part in 100 KiB PATCHes). The node that staged them has
//! just had those bytes in a spool; it keeps them in a local file instead.
//!
//! The copy is only a cache: it is used when the staged objects S3 lists for the part are
//! exactly the ones this node wrote into it (key, size and ETag, in order). Any other case
//! (another node took the upload over and staged bytes of its own, a restart, an evicted
//! copy) reads the staged objects back as before. Copies are bounded in bytes
//! (`store.s3.tail_copy_mib`, least recently used first out) and in time. A copy's file is
//! closed between appends (a [`ParkedSpool`]): the copies are bounded in bytes, not in number,
//! and 10,000 open uploads must not hold 10,000 descriptors.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::StagedObject;
use crate::store::spool::{ParkedSpool, Spool};

/// A copy nobody appended to or used for this long is dropped: its client has most likely
/// gone, and if it comes back the staged objects are still in S3.
const IDLE_LIFETIME: Duration = Duration::from_secs(3600);

/// A file system's usual block: the least disk a file takes.
const BLOCK: u64 = 4096;

/// What a copy of `len` bytes takes on disk, in whole blocks and at least one (a 1 KiB tail
/// is a 4 KiB file). Weighed so, the byte bound also bounds how many copies there are: at
/// most 262,144 in 1 GiB, each about 0.8 KiB of memory besides its file (benchmark scenario
/// 4 on S3: 10,000 uploads left open with a copy each peaked 8-9 MiB above copies off).
fn disk_weight(len: u64) -> u32 {
    u32::try_from(len.div_ceil(BLOCK).max(1) * BLOCK).unwrap_or(u32::MAX)
}

/// The bytes `[start, start + file.len())` of one upload, as the staged `objects` hold them.
struct TailCopy {
    start: u64,
    /// As `PutObject` answered for each; compared with what `ListObjectsV2` lists.
    objects: Vec<StagedObject>,
    /// Deleted with the copy; closed while the copy waits.
    file: ParkedSpool,
}

/// A cache entry. The copy is taken out of it, not shared: the cache may hold on to a
/// removed entry until its next maintenance, so the entry cannot be unwrapped.
struct Slot {
    /// The copy's size when it went in, for the cache's weigher.
    len: u64,
    copy: Mutex<Option<TailCopy>>,
}

pub(super) struct TailCopies {
    /// Upload key → its copy. Taken out while an append works on it (one append per upload
    /// at a time: the upload's session runs them in turn).
    copies: Option<Cache<String, Arc<Slot>>>,
    /// Where the copies' files go (the spool directory).
    dir: PathBuf,
}

impl TailCopies {
    /// Copies of at most `max_bytes` in all; 0 keeps none (every part reads its staged
    /// bytes back from S3).
    pub fn new(max_bytes: u64, dir: PathBuf) -> TailCopies {
        let copies = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &String, slot: &Arc<Slot>| disk_weight(slot.len))
                // Plain LRU: the default admission policy may turn a new upload's copy away
                // in favour of older ones, and a copy is worth most while its upload is active.
                .eviction_policy(EvictionPolicy::lru())
                .time_to_idle(IDLE_LIFETIME)
                .build()
        });
        TailCopies { copies, dir }
    }

    fn take(&self, upload_key: &str) -> Option<TailCopy> {
        let slot = self.copies.as_ref()?.remove(upload_key)?;
        let mut copy = slot.copy.lock().unwrap_or_else(PoisonError::into_inner);
        copy.take()
    }

    /// After `object` (the bytes `spool` holds) was staged for the part starting at
    /// `part_start`: extends the upload's copy with them, or starts one if the object is the
    /// part's first. Anything else (the copy does not end where the object starts) leaves
    /// the upload without a copy. Best effort: a failed local write only costs the part its
    /// shortcut.
    pub async fn record(&self, upload_key: &str, part_start: u64, object: StagedObject, spool: &mut Spool) {
        let Some(copies) = &self.copies else { return };
        let existing = self.take(upload_key).filter(|copy| copy.start == part_start);
        let (mut objects, file) = match existing {
            Some(copy) if copy.start + copy.file.len() == object.start => (copy.objects, copy.file.reopen().await),
            _ if object.start == part_start => (Vec::new(), Spool::new(&self.dir).await),
            _ => return,
        };
        let Ok(mut file) = file else { return };
        if file.append_from(spool).await.is_err() || file.len() != object.start - part_start + object.size {
            return;
        }
        objects.push(object);
        let len = file.len();
        let copy = TailCopy { start: part_start, objects, file: file.park() };
        copies.insert(upload_key.to_owned(), Arc::new(Slot { len, copy: Mutex::new(Some(copy)) }));
    }

    /// The staged bytes `[part_start, part_start + len)`, if this node's copy holds exactly
    /// those and S3 lists exactly its `objects` for them. The copy leaves the cache either
    /// way (the part about to be uploaded supersedes it); one that cannot be reopened is
    /// not used.
    pub async fn take_matching(
        &self,
        upload_key: &str,
        part_start: u64,
        len: u64,
        objects: &[StagedObject],
    ) -> Option<Spool> {
        let copy = self.take(upload_key)?;
        if copy.start != part_start || copy.file.len() != len || copy.objects != objects {
            return None;
        }
        copy.file.reopen().await.ok()
    }

    /// The upload is finished or gone.
    pub fn forget(&self, upload_key: &str) {
        if let Some(copies) = &self.copies {
            copies.invalidate(upload_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn small_copies_weigh_whole_blocks_so_the_bound_caps_their_number_and_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tails = TailCopies::new(4 * BLOCK, dir.path().to_path_buf());
        for n in 0..10 {
            let mut spool = Spool::new(dir.path()).await.expect("spool");
            spool.write(Bytes::from_static(b"x")).await.expect("write");
            let object = StagedObject { key: format!("u{n}.staged/0"), start: 0, size: 1, etag: "\"e\"".into() };
            tails.record(&format!("u{n}"), 0, object, &mut spool).await;
        }
        let cache = tails.copies.as_ref().expect("copies on");
        // Evicts past the bound; the evicted values are dropped at the next maintenance.
        cache.run_pending_tasks();
        cache.run_pending_tasks();
        assert_eq!(cache.entry_count(), 4, "four one-byte copies fill four blocks");
        let files = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(files, 4, "an evicted copy's file is deleted");
    }
}
