use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

use super::actor::{Release, Submit, UploadSession};
use super::append::{AppendRequest, AppendSpec};
use super::job::{Job, JobKind};
use super::pending::Pending;
use crate::cache::UploadCache;
use crate::config::Settings;
use crate::db::models::UploadRow;
use crate::db::{lease_release, uploads, Repo};
use crate::domain::UploadId;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{body_channel, BodyBudget, BodySender, Store};

/// How soon a request waiting for another node to let an upload's lease go looks again: at
/// first (a live node lets go within a few of these), and at most, as the wait goes on (a
/// node that does not answer costs each waiting request a dozen reads, not hundreds).
const HAND_OVER_FIRST_POLL: Duration = Duration::from_millis(10);
const HAND_OVER_LAST_POLL: Duration = Duration::from_millis(160);

/// How long requests stop asking a node that let a hand-over time out: long enough that the
/// requests for a dead node's uploads (its leases lapse after `uploads.lease_ttl_secs`) do
/// not each wait `uploads.lock_wait_ms` first, short enough that a node that was only slow
/// once is asked again soon.
const SILENT_FOR: Duration = Duration::from_secs(10);

/// What every session needs; shared by all of them.
pub struct SessionDeps {
    pub settings: Arc<Settings>,
    pub repo: Repo,
    pub store: Arc<Store>,
    pub cache: UploadCache,
    pub node_id: String,
    /// Jobs running now, so shutdown can wait for their commits.
    pub in_flight: Pending,
    pub metrics: Arc<Metrics>,
    /// Request-body bytes all uploads together may hold in memory.
    pub body_budget: Arc<BodyBudget>,
    sessions: Mutex<HashMap<UploadId, SessionEntry>>,
    /// Nodes that let a hand-over time out, and until when requests stop asking them (see
    /// [`SILENT_FOR`]).
    silent_nodes: Mutex<HashMap<String, std::time::Instant>>,
}

/// A live session and its jobs not yet finished (queued or running). Jobs are counted under
/// the registry's lock when they are sent, so a session can tell, under the same lock, that
/// none is on its way before it leaves the registry and stops: no job is ever sent to a
/// session that is stopping.
struct SessionEntry {
    addr: Addr<UploadSession>,
    jobs: Arc<Pending>,
    /// Bumped to cut the bodies of the requests sent so far (see [`SessionRegistry::interrupt`]).
    cut: watch::Sender<u64>,
}

impl SessionEntry {
    /// Cuts the bodies of the jobs sent to this session so far, if any is unfinished
    /// (counted in `hoist_requests_cut_total`); true if one was.
    fn cut_streaming(&self, metrics: &Metrics) -> bool {
        if self.jobs.pending() == 0 {
            return false;
        }
        self.cut.send_modify(|generation| *generation = generation.wrapping_add(1));
        metrics.requests_cut.inc();
        true
    }
}

impl SessionDeps {
    /// Removes the session if no job is queued, running or on its way to it; true if removed
    /// (the session may stop).
    pub(super) fn retire_if_idle(&self, id: &UploadId, addr: &Addr<UploadSession>) -> bool {
        let Ok(mut sessions) = self.sessions.lock() else { return false };
        match sessions.get(id) {
            Some(entry) if entry.addr == *addr => {
                if entry.jobs.pending() > 0 {
                    return false;
                }
                sessions.remove(id);
                true
            }
            // Already replaced or removed: this session is no longer the upload's.
            _ => true,
        }
    }

    pub(super) fn registry_remove(&self, id: &UploadId, addr: &Addr<UploadSession>) {
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.get(id).is_some_and(|entry| entry.addr == *addr) {
                sessions.remove(id);
            }
        }
    }
}

/// A job the session has taken (or, if it was idle, will start as soon as it reads it);
/// `done` resolves with its result.
pub struct Submitted {
    pub done: oneshot::Receiver<Result<UploadRow, ApiError>>,
    /// Where the request body goes (appends only).
    pub body: Option<BodySender>,
    /// Changes when a later request cuts this one's body ([`SessionRegistry::interrupt`]).
    pub cut: watch::Receiver<u64>,
    /// Kept open so the session does not take the job for abandoned.
    _started: Option<oneshot::Receiver<()>>,
}

/// Chunks that may wait between the request and the writer: bounded memory per upload.
const BODY_PIPE_DEPTH: usize = 16;

/// Finds or starts the session of an upload. Sessions run on their own arbiter, so that
/// shutting the HTTP workers down (cutting bodies) leaves them free to commit what arrived.
#[derive(Clone)]
pub struct SessionRegistry {
    deps: Arc<SessionDeps>,
    arbiter: ArbiterHandle,
}

impl SessionRegistry {
    pub fn new(
        settings: Arc<Settings>,
        repo: Repo,
        store: Arc<Store>,
        cache: UploadCache,
        metrics: Arc<Metrics>,
        arbiter: ArbiterHandle,
    ) -> Self {
        let node_id = settings.node_id();
        // At least 1 MiB: a smaller budget would let a single chunk hold up every other upload.
        let body_budget = BodyBudget::counting_waits(
            settings.server.body_buffer_mib.max(1).saturating_mul(1024 * 1024),
            metrics.body_budget_waits.clone(),
        );
        let deps = Arc::new(SessionDeps {
            settings,
            repo,
            store,
            cache,
            metrics,
            node_id,
            body_budget,
            in_flight: Pending::default(),
            sessions: Mutex::new(HashMap::new()),
            silent_nodes: Mutex::new(HashMap::new()),
        });
        SessionRegistry { deps, arbiter }
    }

    pub fn live_ids(&self) -> Vec<String> {
        self.deps.sessions.lock().map(|s| s.keys().map(ToString::to_string).collect()).unwrap_or_default()
    }

    pub fn is_live(&self, id: &UploadId) -> bool {
        self.deps.sessions.lock().map(|s| s.contains_key(id)).unwrap_or(false)
    }

    pub fn writes_in_flight(&self) -> usize {
        self.deps.in_flight.pending()
    }

    /// This process's node id (`server.node_id`, or the host name).
    pub fn node_id(&self) -> &str {
        &self.deps.node_id
    }

    pub fn live_sessions(&self) -> usize {
        self.deps.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Sends `job` to the upload's session, starting one if need be. Returns the session and
    /// whether it was idle (no other job queued or running): an idle session starts the job
    /// as soon as it reads it.
    fn send(&self, id: &UploadId, job: Job) -> Result<(Addr<UploadSession>, bool, watch::Receiver<u64>), ApiError> {
        let mut sessions =
            self.deps.sessions.lock().map_err(|_| ApiError::Internal("session registry poisoned".into()))?;
        let entry = match sessions.get(id).filter(|entry| entry.addr.connected()) {
            Some(entry) => entry,
            None => {
                let (deps, session_id, jobs) = (self.deps.clone(), id.clone(), Arc::new(Pending::default()));
                let counter = jobs.clone();
                let addr = UploadSession::start_in_arbiter(&self.arbiter, move |_| {
                    UploadSession::new(session_id, deps, counter)
                });
                let (cut, _) = watch::channel(0);
                sessions.entry(id.clone()).insert_entry(SessionEntry { addr, jobs, cut }).into_mut()
            }
        };
        // Counted before it is sent and under the lock: see `SessionEntry`.
        let idle = entry.jobs.add();
        entry.addr.do_send(Submit(job));
        Ok((entry.addr.clone(), idle, entry.cut.subscribe()))
    }

    /// Queues an append; returns at once if the session was idle, else once it has started
    /// the append (the caller may then stream the body), or 423 if another request keeps the
    /// upload busy past the wait.
    pub async fn append(&self, id: &UploadId, spec: AppendSpec) -> Result<Submitted, ApiError> {
        let (tx, rx) = body_channel(BODY_PIPE_DEPTH, self.deps.body_budget.clone());
        self.submit(id, JobKind::Append(AppendRequest { spec, body: rx }), Some(tx)).await
    }

    pub async fn terminate(&self, id: &UploadId) -> Result<UploadRow, ApiError> {
        let submitted = self.submit(id, JobKind::Terminate, None).await?;
        submitted.done.await.map_err(|_| ApiError::Unavailable("upload session stopped".into()))?
    }

    async fn submit(&self, id: &UploadId, kind: JobKind, body: Option<BodySender>) -> Result<Submitted, ApiError> {
        let (started_tx, started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let (addr, idle, cut) = self.send(id, Job { kind, started: started_tx, done: done_tx })?;
        if idle {
            // Nothing is ahead of the job: the caller may stream the body now. Waiting for
            // `started` cost every PATCH a round trip to the sessions' thread: about one
            // context switch in eight of a small PATCH's.
            return Ok(Submitted { done: done_rx, body, cut, _started: Some(started_rx) });
        }
        let wait = Duration::from_millis(self.deps.settings.uploads.lock_wait_ms);
        match tokio::time::timeout(wait, started_rx).await {
            Err(_) => Err(ApiError::Locked),
            Ok(Ok(())) => Ok(Submitted { done: done_rx, body, cut, _started: None }),
            // The session stopped with the job unstarted (the arbiter is shutting down).
            Ok(Err(_)) => {
                self.deps.registry_remove(id, &addr);
                Err(ApiError::Unavailable("upload session stopped".into()))
            }
        }
    }

    /// Cuts the body that earlier requests are streaming into upload `row` (what arrived is
    /// kept and committed, as when a client goes away) and waits, up to
    /// `uploads.lock_wait_ms`, until the session has settled them. This is what the IETF draft
    /// recommends, and tusd 2 does, when a client resumes while the server still holds the
    /// request it lost (a phone that changed networks leaves a half-open connection): without
    /// it, the new request would wait out the dead one's body (`server.body_idle_timeout_secs`)
    /// behind 423s. When another node holds the upload's lease, it is asked to do the same
    /// and let the lease go (see [`SessionRegistry::hand_over`]). Off with
    /// `uploads.cut_abandoned_requests`. Returns whether anything was running or held
    /// elsewhere (and so whether the upload may have moved).
    pub async fn interrupt(&self, id: &UploadId, row: &UploadRow) -> bool {
        if !self.deps.settings.uploads.cut_abandoned_requests {
            return false;
        }
        let jobs = {
            let Ok(sessions) = self.deps.sessions.lock() else { return false };
            match sessions.get(id) {
                Some(entry) if entry.cut_streaming(&self.deps.metrics) => Some(entry.jobs.clone()),
                // Nothing streams here. The upload may still be leased elsewhere: a session
                // here that found it so (423) stays until it idles out, without the lease.
                Some(_) | None => None,
            }
        };
        let Some(jobs) = jobs else { return self.hand_over(id, row).await };
        // The session counts a job out once its commit is done and cached, just before answering.
        jobs.settled_within(Duration::from_millis(self.deps.settings.uploads.lock_wait_ms)).await;
        true
    }

    /// Upload `row` leased by another node (replicas over one PostgreSQL): asks that node to
    /// cut what it streams into the upload and let the lease go (`db::lease_release`), then
    /// waits, up to `uploads.lock_wait_ms`, until the lease is free. Without this, a client
    /// whose next request reached another replica met 423 until the holder's session idled
    /// out (`uploads.session_idle_secs`), after the dead request's body had (60 s each).
    async fn hand_over(&self, id: &UploadId, row: &UploadRow) -> bool {
        let (true, Some(holder)) = (self.leased_elsewhere(row), row.lease_owner.as_deref()) else { return false };
        if self.is_silent(holder) {
            self.deps.metrics.lease_handovers.with_label_values(&["skipped"]).inc();
            return false;
        }
        let (key, node) = (id.to_string(), self.deps.node_id.clone());
        if self.deps.repo.run(move |conn| lease_release::request(conn, &key, &node)).await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.deps.settings.uploads.lock_wait_ms);
        let mut outcome = "timed_out";
        let mut pause = HAND_OVER_FIRST_POLL;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(HAND_OVER_LAST_POLL);
            let key = id.to_string();
            match self.deps.repo.read_by_key(move |conn| uploads::find(conn, &key)).await {
                // Still held, or the database did not answer this time: look again.
                Ok(Some(row)) if self.leased_elsewhere(&row) => continue,
                Err(_) => continue,
                Ok(_) => {
                    outcome = "released";
                    break;
                }
            }
        }
        self.deps.metrics.lease_handovers.with_label_values(&[outcome]).inc();
        self.mark_silent(holder, outcome == "timed_out");
        true
    }

    fn is_silent(&self, node: &str) -> bool {
        let Ok(silent) = self.deps.silent_nodes.lock() else { return false };
        silent.get(node).is_some_and(|until| *until > std::time::Instant::now())
    }

    /// Remembers (for [`SILENT_FOR`]) or forgets that `node` let a hand-over time out.
    fn mark_silent(&self, node: &str, silent: bool) {
        let Ok(mut nodes) = self.deps.silent_nodes.lock() else { return };
        let now = std::time::Instant::now();
        nodes.retain(|_, until| *until > now);
        if silent {
            nodes.insert(node.to_owned(), now + SILENT_FOR);
        } else {
            nodes.remove(node);
        }
    }

    fn leased_elsewhere(&self, row: &UploadRow) -> bool {
        let now = chrono::Utc::now().naive_utc();
        row.lease_owner.as_deref().is_some_and(|owner| owner != self.deps.node_id)
            && row.lease_expires_at.is_some_and(|until| until > now)
    }

    /// Another node asked for upload `id` (`db::lease_release`): if a session here holds it,
    /// cut what streams into it and have the session stop, giving the lease up, once its
    /// jobs are done. Called by the task that listens for those requests.
    pub fn release(&self, id: &UploadId) {
        let Ok(sessions) = self.deps.sessions.lock() else { return };
        if let Some(entry) = sessions.get(id) {
            entry.cut_streaming(&self.deps.metrics);
            entry.addr.do_send(Release);
        }
    }

    /// Waits (bounded) until no job is running: used at shutdown after the HTTP workers
    /// stopped, so bodies that were cut still get their received bytes committed.
    pub async fn drain(&self, limit: Duration) {
        self.deps.in_flight.settled_within(limit).await;
    }

    pub fn deps(&self) -> &Arc<SessionDeps> {
        &self.deps
    }
}
