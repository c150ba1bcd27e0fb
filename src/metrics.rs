//! Every Prometheus collector in one struct, registered on a registry of our own (no
//! globals, so tests can run many servers in one process).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub bytes_received: IntCounter,
    pub patch_body_bytes: Histogram,
    pub uploads_created: IntCounter,
    pub uploads_completed: IntCounter,
    pub uploads_terminated: IntCounter,
    pub uploads_expired: IntCounter,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub live_sessions: IntGauge,
    pub writes_in_flight: IntGauge,
    pub body_buffer_bytes: IntGauge,
    pub body_budget_waits: IntCounter,
    pub requests_cut: IntCounter,
    pub lease_handovers: IntCounterVec,
    pub ready: IntGauge,
    pub db_connections: IntGaugeVec,
    pub rate_limited: IntCounterVec,
    pub store_operations: IntCounterVec,
    pub store_duration: HistogramVec,
    pub db_pool_wait: HistogramVec,
    pub db_pool_timeouts: IntCounterVec,
    pub db_commit_group_size: Histogram,
    pub open_fds: IntGauge,
    pub max_fds: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("hoist_http_requests_total", "HTTP requests by route, method and status"),
            &["route", "method", "status"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new("hoist_http_request_duration_seconds", "HTTP request latency by route and method")
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            &["route", "method"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let patch_body_bytes = Histogram::with_opts(
            HistogramOpts::new("hoist_patch_body_bytes", "Bytes kept per append (PATCH or creation-with-upload)")
                .buckets(prometheus::exponential_buckets(1024.0, 4.0, 10)?),
        )?;
        registry.register(Box::new(patch_body_bytes.clone()))?;
        let lease_handovers = IntCounterVec::new(
            Opts::new(
                "hoist_lease_handovers_total",
                "Requests here for an upload another node held, by whether it let the upload go within \
                 uploads.lock_wait_ms (released) or not (timed_out: that node is gone or unreachable), \
                 or were not asked because it timed out in the last 10 s (skipped)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(lease_handovers.clone()))?;
        let db_connections = IntGaugeVec::new(
            Opts::new("hoist_db_pool_connections", "Database pool connections by pool and state"),
            &["pool", "state"],
        )?;
        registry.register(Box::new(db_connections.clone()))?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "hoist_rate_limited_total",
                "Requests refused (429) by limit: requests, body_bytes, open_uploads, open_bytes",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        let store_operations = IntCounterVec::new(
            Opts::new("hoist_store_operations_total", "Store operations by backend, operation and outcome (ok, error)"),
            &["backend", "operation", "outcome"],
        )?;
        registry.register(Box::new(store_operations.clone()))?;
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "hoist_store_operation_duration_seconds",
                "Store operation latency by backend and operation (append includes receiving the body)",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0]),
            &["backend", "operation"],
        )?;
        registry.register(Box::new(store_duration.clone()))?;
        let db_pool_wait = HistogramVec::new(
            HistogramOpts::new("hoist_db_pool_wait_seconds", "Time to get a database connection from the pool")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["pool"],
        )?;
        registry.register(Box::new(db_pool_wait.clone()))?;
        let db_pool_timeouts = IntCounterVec::new(
            Opts::new("hoist_db_pool_timeouts_total", "Pool checkouts that timed out (database.connect_timeout_secs)"),
            &["pool"],
        )?;
        registry.register(Box::new(db_pool_timeouts.clone()))?;
        let db_commit_group_size = Histogram::with_opts(
            HistogramOpts::new(
                "hoist_db_commit_group_size",
                "Appends whose offsets one database transaction committed (group commit)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )?;
        registry.register(Box::new(db_commit_group_size.clone()))?;
        Ok(Metrics {
            bytes_received: counter(&registry, "hoist_upload_bytes_received_total", "Upload bytes made durable")?,
            uploads_created: counter(&registry, "hoist_uploads_created_total", "Uploads created")?,
            uploads_completed: counter(&registry, "hoist_uploads_completed_total", "Uploads completed")?,
            uploads_terminated: counter(&registry, "hoist_uploads_terminated_total", "Uploads terminated")?,
            uploads_expired: counter(&registry, "hoist_uploads_expired_total", "Uploads expired by the janitor")?,
            cache_hits: counter(&registry, "hoist_cache_hits_total", "Upload lookups served by the cache")?,
            cache_misses: counter(&registry, "hoist_cache_misses_total", "Upload lookups that went to the database")?,
            body_buffer_bytes: gauge(
                &registry,
                "hoist_body_buffer_bytes",
                "Request-body bytes held in memory by all uploads (bounded by server.body_buffer_mib)",
            )?,
            body_budget_waits: counter(
                &registry,
                "hoist_body_budget_waits_total",
                "Request-body chunks that waited for room in server.body_buffer_mib, their connection unread \
                 meanwhile; a steady rise under load means the budget binds and writers store smaller batches",
            )?,
            requests_cut: counter(
                &registry,
                "hoist_requests_cut_total",
                "Requests still streaming into an upload that were cut (their bytes kept) because its owner \
                 sent a new one: clients that gave up on them, a half-open connection left by a network change",
            )?,
            live_sessions: gauge(&registry, "hoist_live_sessions", "Upload sessions alive in this process")?,
            writes_in_flight: gauge(&registry, "hoist_writes_in_flight", "Appends running now")?,
            ready: gauge(&registry, "hoist_ready", "1 if the last /health/ready check passed, else 0")?,
            open_fds: gauge(&registry, "process_open_fds", "File descriptors this process holds open")?,
            max_fds: gauge(&registry, "process_max_fds", "This process's limit on open file descriptors (soft)")?,
            registry,
            http_requests,
            http_duration,
            patch_body_bytes,
            db_connections,
            rate_limited,
            store_operations,
            store_duration,
            db_pool_wait,
            db_pool_timeouts,
            db_commit_group_size,
            lease_handovers,
        })
    }

    /// The text exposition format.
    /// Every metric's name, including labelled ones not yet observed (which `/metrics`
    /// leaves out until their first sample): what dashboards and alerts may refer to.
    pub fn names(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: Vec<&dyn Collector> = vec![
            &self.http_requests,
            &self.http_duration,
            &self.bytes_received,
            &self.patch_body_bytes,
            &self.uploads_created,
            &self.uploads_completed,
            &self.uploads_terminated,
            &self.uploads_expired,
            &self.cache_hits,
            &self.cache_misses,
            &self.live_sessions,
            &self.writes_in_flight,
            &self.ready,
            &self.db_connections,
            &self.rate_limited,
            &self.store_operations,
            &self.store_duration,
            &self.db_pool_wait,
            &self.db_pool_timeouts,
            &self.db_commit_group_size,
            &self.body_buffer_bytes,
            &self.body_budget_waits,
            &self.requests_cut,
            &self.lease_handovers,
            &self.open_fds,
            &self.max_fds,
        ];
        let mut names: Vec<String> =
            collectors.iter().flat_map(|c| c.desc()).map(|desc| desc.fq_name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
