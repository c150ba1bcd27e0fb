use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::append::{run_append, Lease};
use super::job::{Job, JobKind};
use super::pending::Pending;
use super::registry::SessionDeps;
use crate::db::models::UploadRow;
use crate::db::uploads;
use crate::domain::UploadId;
use crate::error::ApiError;

/// Owns one upload while it is active: runs its jobs one at a time, holds its lease, keeps
/// the cache entry current, and stops when idle. Its state can always be rebuilt from the
/// database, so losing the actor loses nothing.
pub struct UploadSession {
    id: UploadId,
    deps: Arc<SessionDeps>,
    queue: VecDeque<Job>,
    busy: bool,
    lease: Option<Lease>,
    last_active: Instant,
    /// Jobs sent to this session and not yet finished, shared with the registry (which
    /// counts them in as it sends them).
    jobs: Arc<Pending>,
    /// Another node asked for this upload: stop (releasing the lease) once no job is left.
    release_asked: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit(pub Job);

/// Another node asks for the upload (see `SessionRegistry::release`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

impl UploadSession {
    pub fn new(id: UploadId, deps: Arc<SessionDeps>, jobs: Arc<Pending>) -> Self {
        UploadSession {
            id,
            deps,
            queue: VecDeque::new(),
            busy: false,
            lease: None,
            last_active: Instant::now(),
            jobs,
            release_asked: false,
        }
    }

    fn job_finished(&self) {
        self.jobs.finish();
    }

    fn start_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        while let Some(job) = self.queue.pop_front() {
            if job.abandoned() {
                self.job_finished();
                continue;
            }
            let Job { kind, started, done } = job;
            if started.send(()).is_err() {
                self.job_finished();
                continue;
            }
            self.busy = true;
            self.deps.in_flight.add();
            let deps = self.deps.clone();
            let id = self.id.clone();
            let lease = self.lease.take();
            let work = async move {
                match kind {
                    JobKind::Append(request) => run_append(&deps, &id, lease, request).await,
                    // Terminating ends the lease with the upload.
                    JobKind::Terminate => (None, terminate(&deps, &id).await),
                }
            };
            ctx.spawn(work.into_actor(self).map(move |(lease, result), act, ctx| {
                act.lease = lease;
                act.busy = false;
                act.last_active = Instant::now();
                act.deps.in_flight.finish();
                // Counted out before the answer goes, so the request that follows it finds
                // the session idle (the next job, if any, starts below, before any new one).
                act.job_finished();
                let _ = done.send(result);
                act.start_next(ctx);
                act.stop_if_released(ctx);
            }));
            return;
        }
    }

    /// Stops, giving the lease up, if another node asked for the upload and no job is left.
    fn stop_if_released(&mut self, ctx: &mut Context<Self>) {
        if self.release_asked {
            self.stop_unless_busy(ctx);
        }
    }

    fn stop_if_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = Duration::from_secs(self.deps.settings.uploads.session_idle_secs);
        if self.last_active.elapsed() >= idle {
            self.stop_unless_busy(ctx);
        }
    }

    /// Stops (releasing the lease) unless a job runs, is queued or is on its way: one on its
    /// way would be dropped unstarted.
    fn stop_unless_busy(&mut self, ctx: &mut Context<Self>) {
        if !self.busy && self.queue.is_empty() && self.deps.retire_if_idle(&self.id, &ctx.address()) {
            ctx.stop();
        }
    }
}

async fn terminate(deps: &SessionDeps, id: &UploadId) -> Result<UploadRow, ApiError> {
    let key = id.to_string();
    let row = deps.repo.run(move |conn| uploads::terminate(conn, &key)).await?.ok_or(ApiError::NotFound)?;
    deps.cache.invalidate(id.as_str());
    deps.store.delete(&row.store_key, row.multipart_id.as_deref()).await?;
    deps.metrics.uploads_terminated.inc();
    Ok(row)
}

impl Actor for UploadSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Requests queue here rather than being refused while another one writes.
        ctx.set_mailbox_capacity(1024);
        let idle = Duration::from_secs(self.deps.settings.uploads.session_idle_secs.max(1));
        ctx.run_interval(idle / 2, |act, ctx| act.stop_if_idle(ctx));
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.deps.registry_remove(&self.id, &ctx.address());
        // Only the lease holder may cache an open upload; it is giving the lease up.
        self.deps.cache.invalidate(self.id.as_str());
        if let Some(lease) = self.lease.take() {
            let repo = self.deps.repo.clone();
            let id = self.id.to_string();
            actix::spawn(async move {
                let _ = repo.run(move |conn| uploads::release_lease(conn, &id, lease.token)).await;
            });
        }
    }
}

impl Handler<Release> for UploadSession {
    type Result = ();

    fn handle(&mut self, _: Release, ctx: &mut Self::Context) {
        self.release_asked = true;
        self.stop_if_released(ctx);
    }
}

impl Handler<Submit> for UploadSession {
    type Result = ();

    fn handle(&mut self, Submit(job): Submit, ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        self.queue.push_back(job);
        self.start_next(ctx);
    }
}
