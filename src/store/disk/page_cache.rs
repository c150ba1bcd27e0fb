//! What an upload's writes leave in the page cache, with fsync on.
//!
//! A byte written into an upload's file is read again, if ever, by a download much later.
//! Left in the cache, every upload's bytes take fresh pages from the free lists, and a fresh
//! page is the expensive kind on a virtual machine that hands free memory back to its host
//! (virtio-balloon free page reporting, as here): its first touch faults on the host. A 1 GiB
//! file written in 64 KiB, 1 MiB or 8 MiB writes took 330–390 MiB/s here, and 2406–3120 MiB/s
//! when its writer started writeback of each completed MiB and dropped the written-back pages
//! 16 MiB behind: the next pages the file needs are then the ones it just gave back, still
//! warm. It also keeps uploads from pushing out what downloads and the database read.
//!
//! Only with fsync on: its bytes are on the device before the next write, so dropping them
//! costs no device work. With fsync off they are still dirty, and dropping them means writing
//! them back first, work the kernel would otherwise defer (and skip for an upload deleted
//! soon): benchmark scenario 1 with fsync off lost a fifth of its rate to that (868 and 834
//! MiB/s against 1184 and 1085, the newest 16 MiB of each upload left alone).

use std::fs::File;

/// Pages are dropped a step at a time (aligned in the file, so an append of 64 KiB crosses a
/// step boundary in one write of 64 and costs nothing in between; fifty 8 MiB uploads make
/// fifty calls in all).
const STEP: u64 = 4 * 1024 * 1024;

/// How far behind a write its pages are dropped. A page still being written (the tail of a
/// body whose fsync has not run yet) stays this time and goes with a later write while it is
/// within this window; the kernel reclaims the rare one left behind.
const WINDOW: u64 = 16 * 1024 * 1024;

/// After `[start, end)` of `file` was written, and every earlier write fsynced or at least
/// sent to the device: when the write completed a step, drops the pages before `start`'s
/// step from the cache.
pub fn release_behind(file: &File, start: u64, end: u64) {
    let (first, last) = ((start / STEP) * STEP, (end / STEP) * STEP);
    if last == first {
        return;
    }
    let from = first.saturating_sub(WINDOW);
    if first > from {
        drop_cached(file, from, first - from);
    }
}

/// Starts writing a just-written range to the device without waiting for it. The fsync
/// that acknowledges the append then waits only for the tail of the body instead of
/// flushing all of it after the last byte arrived: the disk works while the network does.
#[cfg(target_os = "linux")]
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: a plain syscall on a descriptor `file` keeps open for the whole call; it
    // reads no memory of ours. A failure only means the later fsync does all the work.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Drops the clean pages of a range from the cache; the kernel writes a dirty one back
/// first and keeps it (this never loses data).
#[cfg(target_os = "linux")]
fn drop_cached(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: as above; a failure leaves the pages to the kernel's own reclaim.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED);
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_cached(_file: &File, _offset: u64, _len: u64) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    use super::*;

    /// Pages of `file` in the page cache, per step of its first `len` bytes (mincore).
    fn resident_per_step(file: &File, len: usize) -> Vec<usize> {
        let page = 4096;
        // SAFETY: a read-only shared mapping of `len` bytes of a file at least that long,
        // unmapped before return; mincore writes one byte per page into a vector that long.
        unsafe {
            let map = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0);
            assert_ne!(map, libc::MAP_FAILED, "mmap");
            let mut pages = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, pages.as_mut_ptr()), 0, "mincore");
            libc::munmap(map, len);
            pages.chunks(STEP as usize / page).map(|step| step.iter().filter(|p| **p & 1 == 1).count()).collect()
        }
    }

    #[test]
    fn fsynced_pages_behind_the_last_step_leave_the_cache_and_the_bytes_stay() {
        // On a disk (/tmp may be a tmpfs, which keeps every page whatever it is told).
        let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
        let path = dir.path().join("upload");
        let mut file = File::create(&path).expect("file");
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let total = 6 * STEP;
        let mut offset = 0;
        while offset < total {
            // As the disk store does with fsync on: each append synced before the next.
            file.write_all(&chunk).expect("write");
            release_behind(&file, offset, offset + chunk.len() as u64);
            file.sync_data().expect("sync");
            offset += chunk.len() as u64;
        }
        let resident = resident_per_step(&File::open(&path).expect("open"), total as usize);
        let full = (STEP / 4096) as usize;
        // Each write that completed a step dropped the synced ones before it...
        assert!(resident[..5].iter().all(|&pages| pages == 0), "synced steps still cached: {resident:?}");
        // ...and none touched the step being written.
        assert_eq!(resident[5], full, "the newest step left the cache: {resident:?}");
        let mut back = Vec::new();
        File::open(&path).expect("open").read_to_end(&mut back).expect("read");
        assert_eq!(back.len() as u64, total);
        assert!(back.chunks(chunk.len()).all(|piece| piece == chunk.as_slice()), "the bytes changed");
    }
}
