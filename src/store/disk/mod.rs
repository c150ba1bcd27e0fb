//! The disk store: one file per upload under `root/xx/<id>`. Appends stream through a
//! small batch buffer on the blocking pool and are fsynced before they are acknowledged;
//! with fsync off and `store.disk.write_on_http_workers` the request's pump writes them
//! itself (see [`lent`]).

mod lent;
mod page_cache;

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::page_cache::{release_behind, start_writeback};
use super::body::{BodyChunk, Next};
use super::{AppendOutcome, AppendTarget, BodyEnd, BodyEvent, BodyReceiver, StoreError};
use crate::domain::{Checksum, Hasher};

/// Bytes gathered before one write call on the blocking pool.
const WRITE_BATCH: u64 = 512 * 1024;

pub struct DiskStore {
    root: PathBuf,
    fsync: bool,
    /// Lend each append's file to its pump (fsync off only): see [`lent`].
    lend: bool,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
        .map_err(StoreError::Io)
}

/// Why a batch is stored before the body ends.
#[derive(PartialEq)]
enum BatchDue {
    /// It reached [`WRITE_BATCH`].
    Full,
    /// Other bodies wait for the memory it holds.
    Early,
}

impl StoreError {
    /// A missing upload file is the upload's object gone, not an I/O failure.
    fn not_found_as(self, key: &str) -> StoreError {
        match self {
            StoreError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => StoreError::NotFound(key.to_owned()),
            other => other,
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskStore {
    pub fn new(root: PathBuf, fsync: bool, lend: bool) -> std::io::Result<DiskStore> {
        std::fs::create_dir_all(&root)?;
        Ok(DiskStore { root, fsync, lend })
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

    /// Streams the body into the upload's file. Each trip to the blocking pool does a whole
    /// step: the first also opens the file, the last also verifies and makes the bytes
    /// durable and then runs `on_durable` (the caller's commit of the new offset), so a small
    /// PATCH costs one trip instead of four (thread hand-offs, not the I/O, dominated small
    /// appends in the profiles).
    pub async fn append<T, F>(
        &self,
        target: &AppendTarget,
        body: &mut BodyReceiver,
        max_bytes: u64,
        checksum: Option<&Checksum>,
        on_durable: F,
    ) -> Result<(AppendOutcome, T), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&AppendOutcome) -> T + Send + 'static,
    {
        let mut writer = FileAppend {
            path: self.path(&target.key),
            file: None,
            offset: target.offset,
            written: 0,
            hasher: checksum.map(|c| c.algorithm.hasher()),
            fsync: self.fsync,
        };
        let not_found = target.key.clone();
        let mut batch: Vec<BodyChunk> = Vec::new();
        let mut batch_len: u64 = 0;
        let mut queued: u64 = 0;
        // With fsync off and `write_on_http_workers`, the pump writes the body itself from the
        // first moment nothing is on its way through the pipe (at once, usually): a copy into
        // the page cache waits for no device. The batch of what came through the pipe before
        // goes first.
        let lendable = (self.lend && !self.fsync).then(|| Arc::new(lent::LentFile::default()));
        let end = loop {
            if let Some(lendable) = &lendable {
                match lendable.lend(body, writer, std::mem::take(&mut batch), queued, max_bytes) {
                    Some((kept, backlog)) => (writer, batch) = (kept, backlog),
                    None => {
                        let returned = lendable.take_back_at_end(body).await.map_err(|e| e.not_found_as(&not_found))?;
                        (writer, batch) = (returned.writer, returned.backlog);
                        break returned.end;
                    }
                }
            }
            let event = if batch.is_empty() { Next::Event(body.next().await) } else { body.next_or_store().await };
            let due = match event {
                Next::Event(BodyEvent::Data(chunk)) => {
                    if queued + chunk.len() as u64 > max_bytes {
                        break BodyEnd::TooLarge;
                    }
                    queued += chunk.len() as u64;
                    batch_len += chunk.len() as u64;
                    batch.push(chunk);
                    (batch_len >= WRITE_BATCH).then_some(BatchDue::Full)
                }
                Next::Event(BodyEvent::End) => break BodyEnd::Complete,
                Next::Event(BodyEvent::Failed) => break BodyEnd::Interrupted,
                // Other bodies wait for the memory this batch holds.
                Next::StoreNow => Some(BatchDue::Early),
            };
            let Some(due) = due else { continue };
            let pending = std::mem::take(&mut batch);
            batch_len = 0;
            if due == BatchDue::Early && !self.fsync {
                // Stored here, on the sessions' thread: a copy into the page cache, no device
                // wait (the first also opens the file). Early batches are small (the memory budget shared by every upload
                // bounds them, about budget / uploads), and a hand-off to `hoist-io` and back
                // cost more than such a copy. Benchmark scenario 2 with fsync off made five
                // per 1 MiB PATCH; storing them here cut the server's thread switches from
                // 15.6-17.2k to 8.8-11.4k and its rate rose from 769-1000 (mean 909) to
                // 879-1220 MiB/s (mean 1042) in alternating runs. The price: that copy now
                // runs at the default priority, beside the HEADs (scenario 5 with fsync off,
                // p50 0.66-0.96 ms before, 0.92-1.14 after; at `io_nice` the sessions' thread
                // cost scenario 2 its gain and more). Full batches still go to `hoist-io`,
                // where uploads' copies run in parallel; with fsync on every batch does, as
                // starting the device's write-back can wait for the device.
                writer.write(&pending).map_err(|e| StoreError::Io(e).not_found_as(&not_found))?;
                continue;
            }
            writer = blocking(move || {
                writer.write(&pending)?;
                Ok(writer)
            })
            .await
            .map_err(|e| e.not_found_as(&not_found))?;
        };
        // The rest of the body, the checksum verdict, the fsync and the caller's commit: one
        // more trip. The commit runs only once the bytes are durable.
        let checksum = checksum.cloned();
        blocking(move || {
            if end != BodyEnd::TooLarge {
                writer.write(&batch)?;
            }
            let (written, end) = writer.finish(end, checksum.as_ref())?;
            let outcome = AppendOutcome { written, end, parts: Vec::new(), superseded: Vec::new() };
            let settled = on_durable(&outcome);
            Ok((outcome, settled))
        })
        .await
        .map_err(|e| e.not_found_as(&not_found))
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

/// Writes every chunk with as few `writev` calls as the kernel allows (one for a whole batch,
/// usually): the HTTP layer hands bodies over in pieces of up to 32 KiB, and a `write` per
/// piece cost a syscall each (two per 64 KiB PATCH, sixteen per 512 KiB batch).
fn write_all_vectored<C: AsRef<[u8]>>(file: &mut File, chunks: &[C]) -> std::io::Result<()> {
    // Empty pieces are left out: a `writev` of nothing but empty ones returns 0, which would
    // read as a file that takes no more bytes (an HTTP/2 body's last DATA frame is often empty).
    let mut slices: Vec<IoSlice<'_>> =
        chunks.iter().map(AsRef::as_ref).filter(|chunk| !chunk.is_empty()).map(IoSlice::new).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "the file took no more bytes")),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// One append's file, moved between the session and the blocking pool.
struct FileAppend {
    path: PathBuf,
    /// Opened by the first write (or by `finish` when no byte came).
    file: Option<File>,
    /// The committed offset the append starts at.
    offset: u64,
    written: u64,
    hasher: Option<Hasher>,
    fsync: bool,
}

impl FileAppend {
    fn open(&mut self) -> std::io::Result<&mut File> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let mut file = OpenOptions::new().write(true).open(&self.path)?;
                // Bytes past the committed offset were never acknowledged (a crash between
                // write and commit): drop them before appending.
                if file.metadata()?.len() != self.offset {
                    file.set_len(self.offset)?;
                }
                file.seek(SeekFrom::Start(self.offset))?;
                file
            }
        };
        Ok(self.file.insert(file))
    }

    fn write<C: AsRef<[u8]>>(&mut self, chunks: &[C]) -> std::io::Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let (start, fsync) = (self.offset + self.written, self.fsync);
        let len: u64 = chunks.iter().map(|chunk| chunk.as_ref().len() as u64).sum();
        let file = self.open()?;
        write_all_vectored(file, chunks)?;
        if fsync {
            start_writeback(file, start, len);
            release_behind(file, start, start + len);
        }
        if let Some(hasher) = self.hasher.as_mut() {
            chunks.iter().for_each(|chunk| hasher.update(chunk.as_ref()));
        }
        self.written += len;
        Ok(())
    }

    /// Verifies the checksum, drops a rejected chunk, and makes the rest durable. Returns the
    /// bytes to commit and how the body ended.
    fn finish(mut self, end: BodyEnd, checksum: Option<&Checksum>) -> std::io::Result<(u64, BodyEnd)> {
        let has_checksum = checksum.is_some();
        let end = super::checksum_verdict(end, checksum, self.hasher.take());
        let (offset, written, fsync) = (self.offset, self.written, self.fsync);
        let file = self.open()?;
        if matches!(end, BodyEnd::TooLarge | BodyEnd::ChecksumMismatch) || (end == BodyEnd::Interrupted && has_checksum)
        {
            // Nothing of a rejected chunk is kept.
            file.set_len(offset)?;
            return Ok((0, end));
        }
        if fsync && written > 0 {
            file.sync_data()?;
        }
        Ok((written, end))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::ChecksumAlgorithm;
    use crate::store::{body_channel, BodyBudget};

    /// How a test pump ends the body it sends.
    #[derive(Clone, Copy, PartialEq)]
    enum Ending {
        Complete,
        /// Its connection breaks: the sender goes without `End`.
        Broken,
    }

    /// Appends `pieces` with fsync off: the first `before` of them are in the pipe when the
    /// store starts (it writes those itself), the rest come while it waits (through the file
    /// it lends the pump). Returns the outcome and the file's bytes.
    async fn append_with_fsync_off(
        pieces: &[Vec<u8>],
        before: usize,
        max_bytes: u64,
        checksum: Option<Checksum>,
        ending: Ending,
    ) -> (AppendOutcome, Vec<u8>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DiskStore::new(dir.path().to_path_buf(), false, true).expect("store");
        store.create("ab12").await.expect("create");
        let (tx, mut rx) = body_channel(16, BodyBudget::new(1024 * 1024));
        for piece in &pieces[..before] {
            tx.send_data(Bytes::from(piece.clone())).await.expect("pipe open");
        }
        let later = pieces[before..].to_vec();
        let pump = tokio::spawn(async move {
            for piece in later {
                if tx.send_data(Bytes::from(piece)).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            if ending == Ending::Complete {
                tx.end(true).await;
            }
        });
        let target = AppendTarget { key: "ab12".into(), offset: 0, length: None, part_size: None, multipart_id: None };
        let (outcome, ()) = store.append(&target, &mut rx, max_bytes, checksum.as_ref(), |_| ()).await.expect("append");
        pump.await.expect("pump");
        let on_disk = std::fs::read(store.path("ab12")).expect("read back");
        (outcome, on_disk)
    }

    fn pieces() -> Vec<Vec<u8>> {
        (0..40).map(|i| (0..(i * 997) % 5000).map(|j| (i * 13 + j) as u8).collect()).collect()
    }

    fn sha256_of(body: &[u8]) -> Checksum {
        use sha2::Digest;
        Checksum { algorithm: ChecksumAlgorithm::Sha256, digest: sha2::Sha256::digest(body).to_vec() }
    }

    #[tokio::test]
    async fn with_fsync_off_a_body_lands_whole_and_in_order_through_the_pipe_and_the_lent_file() {
        let pieces = pieces();
        let body = pieces.concat();
        for before in [0, 5, 16] {
            let (outcome, on_disk) =
                append_with_fsync_off(&pieces, before, u64::MAX, Some(sha256_of(&body)), Ending::Complete).await;
            assert_eq!(outcome.end, BodyEnd::Complete, "{before} pieces through the pipe");
            assert_eq!(outcome.written, body.len() as u64);
            assert!(on_disk == body, "{before} pieces through the pipe: the file is not the body");
        }
    }

    #[tokio::test]
    async fn with_fsync_off_a_body_past_its_limit_or_its_checksum_leaves_nothing() {
        let pieces = pieces();
        let body = pieces.concat();
        let too_large = append_with_fsync_off(&pieces, 5, body.len() as u64 - 1, None, Ending::Complete).await;
        let mismatch =
            append_with_fsync_off(&pieces, 5, u64::MAX, Some(sha256_of(b"another body")), Ending::Complete).await;
        for ((outcome, on_disk), end) in [(too_large, BodyEnd::TooLarge), (mismatch, BodyEnd::ChecksumMismatch)] {
            assert_eq!(outcome.end, end);
            assert_eq!(outcome.written, 0);
            assert!(on_disk.is_empty(), "{end:?}: {} bytes kept", on_disk.len());
        }
    }

    #[tokio::test]
    async fn with_fsync_off_a_broken_body_keeps_what_arrived() {
        let pieces = pieces();
        let (outcome, on_disk) = append_with_fsync_off(&pieces, 5, u64::MAX, None, Ending::Broken).await;
        assert_eq!(outcome.end, BodyEnd::Interrupted);
        assert_eq!(outcome.written, pieces.concat().len() as u64);
        assert!(on_disk == pieces.concat());
    }

    #[tokio::test]
    async fn a_batch_of_chunks_lands_in_the_file_whole_and_in_order() {
        // Uneven sizes, empty pieces among them, and more pieces than one writev takes
        // (IOV_MAX is 1024 on Linux), so the loop must resume mid-batch: what lands must be
        // the body, byte for byte.
        let sizes: Vec<usize> = (0..1500).map(|i| (i * 7919) % 3000).collect();
        let (tx, mut rx) = body_channel(sizes.len(), BodyBudget::new(64 * 1024 * 1024));
        let mut expected = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let piece: Vec<u8> = (0..*size).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&piece);
            tx.send_data(Bytes::from(piece)).await.expect("pipe open");
        }
        let mut chunks = Vec::new();
        for _ in &sizes {
            let BodyEvent::Data(chunk) = rx.next().await else { panic!("expected data") };
            chunks.push(chunk);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("upload");
        let mut file = File::create(&path).expect("create");
        write_all_vectored(&mut file, &chunks).expect("write");
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
    }

    #[tokio::test]
    async fn a_batch_of_nothing_but_empty_chunks_writes_nothing_and_succeeds() {
        let (tx, mut rx) = body_channel(4, BodyBudget::new(1024));
        let mut chunks = Vec::new();
        for _ in 0..2 {
            tx.send_data(Bytes::new()).await.expect("pipe open");
            let BodyEvent::Data(chunk) = rx.next().await else { panic!("expected data") };
            chunks.push(chunk);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("upload");
        let mut file = File::create(&path).expect("create");
        file.write_all(b"kept").expect("first bytes");
        write_all_vectored(&mut file, &chunks).expect("an empty batch is no error");
        drop(file);
        assert_eq!(std::fs::read(&path).expect("read back"), b"kept");
    }
}
