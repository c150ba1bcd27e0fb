//! Group commit: appends that finish at the same time commit their new offsets in one
//! transaction, so one durable commit (one WAL fsync on SQLite with synchronous=FULL, one
//! COMMIT on PostgreSQL) acknowledges all of them.
//!
//! No thread of its own: the first committer to find no commit running becomes the leader,
//! takes every request queued so far (its own among them), commits them together and hands
//! each its result; requests that arrive meanwhile wait and form the next group. A lone
//! append commits alone, as before, with no added wait.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use diesel::Connection;

use super::models::UploadRow;
use super::uploads::{commit_progress, Progress};
use super::{DbError, Repo};

/// One append's commit: its upload (the row the append was admitted with), its lease's
/// fencing token and what it changes.
pub struct CommitRequest {
    pub admitted: UploadRow,
    pub token: i64,
    pub progress: Progress,
}

/// The new row, None if the compare-and-set found the upload changed (see `commit_progress`).
pub type CommitResult = Result<Option<UploadRow>, DbError>;

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: Vec<(u64, CommitRequest)>,
    results: HashMap<u64, CommitResult>,
    leader_active: bool,
}

#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Queue>,
    finished: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent at every unlock; a panic elsewhere does not corrupt it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `request`, alone or with others; blocks, so call it on a blocking thread.
    pub fn commit(&self, repo: &Repo, request: CommitRequest) -> CommitResult {
        let mut queue = self.lock();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push((ticket, request));
        loop {
            if let Some(result) = queue.results.remove(&ticket) {
                return result;
            }
            if !queue.leader_active {
                queue.leader_active = true;
                let group = std::mem::take(&mut queue.waiting);
                drop(queue);
                if let Some(metrics) = &repo.metrics {
                    metrics.db_commit_group_size.observe(group.len() as f64);
                }
                let mut leading = Leading { group: self, armed: true };
                let results = commit_group(repo, group);
                leading.armed = false;
                queue = self.lock();
                queue.results.extend(results);
                queue.leader_active = false;
                self.finished.notify_all();
                continue;
            }
            queue = self.finished.wait(queue).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// If the leader's commit panics, hands leadership back and wakes the waiters, so that they
/// lead in turn instead of waiting for ever.
struct Leading<'a> {
    group: &'a GroupCommit,
    armed: bool,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.group.lock().leader_active = false;
            self.group.finished.notify_all();
        }
    }
}

/// One transaction for the whole group; if it fails, each request alone, so that one
/// request's failure is not every other's.
fn commit_group(repo: &Repo, group: Vec<(u64, CommitRequest)>) -> Vec<(u64, CommitResult)> {
    let alone = |(ticket, request): &(u64, CommitRequest)| (*ticket, commit_alone(repo, request));
    if group.len() == 1 {
        return group.iter().map(alone).collect();
    }
    let together = repo.run_blocking(|conn| {
        conn.transaction(|conn| {
            group
                .iter()
                .map(|(_, request)| commit_progress(conn, &request.admitted, request.token, &request.progress))
                .collect::<Result<Vec<_>, DbError>>()
        })
    });
    match together {
        Ok(rows) => group.iter().map(|(ticket, _)| *ticket).zip(rows.into_iter().map(Ok)).collect(),
        Err(_) => group.iter().map(alone).collect(),
    }
}

fn commit_alone(repo: &Repo, request: &CommitRequest) -> CommitResult {
    repo.run_blocking(|conn| commit_progress(conn, &request.admitted, request.token, &request.progress))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;
    use crate::db::uploads::{find, insert, now};

    fn open_row(id: &str) -> UploadRow {
        let now = now();
        UploadRow {
            id: id.to_owned(),
            owner: "owner".into(),
            state: "open".into(),
            upload_length: Some(1000),
            upload_offset: 0,
            metadata: String::new(),
            concat_kind: None,
            concat_parts: None,
            store_key: id.to_owned(),
            part_size: None,
            created_at: now,
            updated_at: now,
            expires_at: None,
            completed_at: None,
            lease_owner: Some("node".into()),
            lease_expires_at: None,
            lease_token: 7,
            multipart_id: None,
        }
    }

    #[test]
    fn commits_arriving_together_each_get_their_own_answer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = dir.path().join("hoist.db").display().to_string();
        let repo = Repo::connect(&url, 1, 1, Duration::from_secs(5), true, None).expect("database");
        const UPLOADS: usize = 24;
        for i in 0..UPLOADS {
            let row = open_row(&format!("u{i:02}"));
            repo.run_blocking(|conn| insert(conn, &row)).expect("insert");
        }
        // All at once, so that most of them queue behind a leader and commit as a group.
        // Every fourth one carries a stale fencing token: it must be refused alone.
        let start = Arc::new(Barrier::new(UPLOADS));
        let threads: Vec<_> = (0..UPLOADS)
            .map(|i| {
                let (repo, start) = (repo.clone(), start.clone());
                std::thread::spawn(move || {
                    let progress = Progress {
                        from_offset: 0,
                        to_offset: 10 + i as u64,
                        declare_length: None,
                        complete: false,
                        lease_until: now(),
                        new_parts: Vec::new(),
                    };
                    let token = if i % 4 == 3 { 6 } else { 7 };
                    let admitted =
                        repo.run_blocking(|conn| find(conn, &format!("u{i:02}"))).expect("find").expect("row");
                    start.wait();
                    repo.commit_progress_blocking(CommitRequest { admitted, token, progress })
                })
            })
            .collect();
        for (i, thread) in threads.into_iter().enumerate() {
            let answer = thread.join().expect("committer thread").expect("commit");
            let stored = repo.run_blocking(|conn| find(conn, &format!("u{i:02}"))).expect("find").expect("row");
            if i % 4 == 3 {
                assert!(answer.is_none(), "upload {i}: a stale token must not commit");
                assert_eq!(stored.upload_offset, 0);
            } else {
                // The answer is built from the admitted row, not read back: it must be the
                // row as stored, every column of it.
                assert_eq!(answer.expect("committed row"), stored);
                assert_eq!(stored.upload_offset, 10 + i as i64);
            }
        }
    }
}
