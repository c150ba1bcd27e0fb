//! The process's open file descriptors and its limit on them, for `/metrics` as
//! `process_open_fds` and `process_max_fds` (the names Prometheus's client libraries give
//! them, so existing dashboards find them). Each connection holds one, each append a file or
//! two while it writes; at the limit every request that opens a file or accepts a connection
//! fails. Read at scrape time, from `/proc` (Linux) and `getrlimit`.

/// Descriptors open now; None where `/proc/self/fd` cannot be listed (no `/proc`, or the
/// limit reached: the listing needs a descriptor too, and the gauge keeps its last value).
pub fn open_descriptors() -> Option<u64> {
    let listed = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // The listing's own descriptor (the open directory) is among what it lists.
    Some(listed.saturating_sub(1))
}

/// The soft limit on open descriptors; None if unlimited or unknown.
pub fn descriptor_limit() -> Option<u64> {
    let limit = read_limit().ok()?;
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Raises the soft limit on open descriptors to the hard one, as Go's runtime and nginx's
/// `worker_rlimit_nofile` do: a service's soft limit is often 1,024 (systemd's default) while
/// its hard one allows far more, and every connection and every append being written takes
/// a descriptor. Returns (soft before, soft now) if it changed anything.
pub fn raise_descriptor_limit() -> std::io::Result<Option<(u64, u64)>> {
    let mut limit = read_limit()?;
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(None);
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct it is given, which lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some((before, limit.rlim_cur)))
}

/// The process's soft and hard limits on open descriptors.
fn read_limit() -> std::io::Result<libc::rlimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes only into the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(limit)
}
