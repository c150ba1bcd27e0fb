//! The directory this process keeps its spools and tail copies in: one of its own under
//! `store.s3.spool_dir`, held for the process's life by an exclusive `flock` on a lock file
//! inside it. A process that is killed leaves its files behind (a part per active upload,
//! and up to `store.s3.tail_copy_mib` of tail copies); the next store to start on that
//! spool_dir removes every such directory whose lock nobody holds. A live one (another node
//! on the same host, or another store in the same process) keeps its files: its lock is
//! held. The kernel drops a dead process's `flock`, and containers sharing a volume see each
//! other's locks, which a PID file would not give. Like any `flock`, it needs a local file
//! system, which a spool is for anyway.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const OWNED_PREFIX: &str = "hoist-spool-";
/// A directory being set up: its lock is taken before it is renamed to its owned name, so
/// an owned directory without a held lock is always one whose process is gone.
const CLAIM_PREFIX: &str = ".hoist-claim-";
const LOCK_FILE: &str = "lock";
/// A claim directory older than this was left by a process killed while it set one up (the
/// rename follows its creation within microseconds); a younger one may be a starting
/// store's, not yet locked.
const STALE_CLAIM: std::time::Duration = std::time::Duration::from_secs(60);

pub struct SpoolDir {
    path: PathBuf,
    /// Holds the `flock` while the store lives.
    _lock: File,
}

impl SpoolDir {
    /// Claims a directory of this process's own under `root`, then removes those that
    /// processes no longer running left there. Returns the directory and how many left
    /// ones it removed.
    pub fn claim(root: &Path) -> io::Result<(SpoolDir, usize)> {
        std::fs::create_dir_all(root)?;
        let claim = tempfile::Builder::new().prefix(CLAIM_PREFIX).tempdir_in(root)?;
        let lock = File::create(claim.path().join(LOCK_FILE))?;
        if !try_lock(&lock)? {
            return Err(io::Error::other("a new spool directory's lock was already taken"));
        }
        let suffix = claim
            .path()
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix(CLAIM_PREFIX))
            .unwrap_or_default()
            .to_owned();
        let path = root.join(format!("{OWNED_PREFIX}{suffix}"));
        std::fs::rename(claim.path(), &path)?;
        // Renamed: the claim's own clean-up would now find nothing to remove.
        let _ = claim.keep();
        let dir = SpoolDir { path, _lock: lock };
        let removed = dir.remove_abandoned(root)?;
        Ok((dir, removed))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remove_abandoned(&self, root: &Path) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(root)? {
            let entry = entry?;
            match self.remove_if_abandoned(&entry) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                // Gone since it was listed: another store starting beside this one renamed
                // its claim or removed an abandoned directory first.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(removed)
    }

    /// Removes the directory `entry` if it is another store's claim or spool directory whose
    /// process is gone; Ok(true) if this call removed it.
    fn remove_if_abandoned(&self, entry: &std::fs::DirEntry) -> io::Result<bool> {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str().unwrap_or_default();
        let (owned, claim) = (name.starts_with(OWNED_PREFIX), name.starts_with(CLAIM_PREFIX));
        if !(owned || claim) || path == self.path || !entry.file_type()?.is_dir() {
            return Ok(false);
        }
        if claim && entry.metadata()?.modified()?.elapsed().unwrap_or_default() < STALE_CLAIM {
            return Ok(false);
        }
        let abandoned = match File::open(path.join(LOCK_FILE)) {
            // Locked here until the directory is gone, so no other starting store
            // counts it too.
            Ok(lock) => try_lock(&lock)?,
            // A stale claim killed before it made its lock file; or another store
            // removing this directory right now got to the lock file first.
            Err(err) if err.kind() == io::ErrorKind::NotFound => claim,
            Err(err) => return Err(err),
        };
        if abandoned {
            std::fs::remove_dir_all(&path)?;
        }
        Ok(abandoned)
    }
}

impl Drop for SpoolDir {
    /// A store that stops cleanly leaves nothing behind: its spools were dropped before it.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Takes `file`'s exclusive `flock` if nobody holds it: Ok(false) if another open file
/// (in this process or another) does.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned_dirs(root: &Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().unwrap().to_str().unwrap().starts_with(OWNED_PREFIX))
            .collect();
        dirs.sort();
        dirs
    }

    #[test]
    fn a_live_stores_directory_is_kept_and_a_released_one_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let (first, removed) = SpoolDir::claim(root.path()).unwrap();
        assert_eq!(removed, 0);
        std::fs::write(first.path().join("spool"), b"a part").unwrap();
        let (second, removed) = SpoolDir::claim(root.path()).unwrap();
        assert_eq!(removed, 0, "the first store is alive: its lock is held");
        assert_eq!(owned_dirs(root.path()).len(), 2);
        assert!(first.path().join("spool").exists());

        // As for a killed process: the lock is dropped, the directory stays.
        let path = first.path.clone();
        // SAFETY: the descriptor is open (`first` is forgotten, not dropped).
        assert_eq!(unsafe { libc::flock(first._lock.as_raw_fd(), libc::LOCK_UN) }, 0);
        std::mem::forget(first);
        assert!(path.join("spool").exists());
        let (third, removed) = SpoolDir::claim(root.path()).unwrap();
        assert_eq!(removed, 1);
        assert!(!path.exists());
        let mut live = vec![second.path().to_path_buf(), third.path().to_path_buf()];
        live.sort();
        assert_eq!(owned_dirs(root.path()), live);
    }

    #[test]
    fn a_stale_claim_is_removed_and_a_fresh_one_kept() {
        let root = tempfile::tempdir().unwrap();
        let stale = root.path().join(format!("{CLAIM_PREFIX}stale"));
        std::fs::create_dir(&stale).unwrap();
        File::create(stale.join(LOCK_FILE)).unwrap();
        let two_minutes_ago = std::time::SystemTime::now() - 2 * STALE_CLAIM;
        File::open(&stale).unwrap().set_modified(two_minutes_ago).unwrap();
        let fresh = root.path().join(format!("{CLAIM_PREFIX}fresh"));
        std::fs::create_dir(&fresh).unwrap();

        let (_dir, removed) = SpoolDir::claim(root.path()).unwrap();
        assert_eq!(removed, 1);
        assert!(!stale.exists());
        assert!(fresh.exists(), "a claim this young may be a starting store's");
    }

    #[test]
    fn a_store_that_stops_removes_its_own_directory() {
        let root = tempfile::tempdir().unwrap();
        let (dir, _) = SpoolDir::claim(root.path()).unwrap();
        std::fs::write(dir.path().join("spool"), b"a part").unwrap();
        drop(dir);
        assert!(owned_dirs(root.path()).is_empty());
    }

    #[test]
    fn stores_starting_at_once_on_one_root_all_claim_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let root = root.path().to_path_buf();
                // Each claim sees the others' claims renamed and their directories removed
                // between listing an entry and looking at it.
                std::thread::spawn(move || (0..200).try_for_each(|_| SpoolDir::claim(&root).map(drop)))
            })
            .collect();
        for start in starts {
            start.join().unwrap().expect("every start claims a directory");
        }
    }
}
