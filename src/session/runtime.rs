//! The runtime the sessions run on, and the priority of the threads that do their I/O.

/// Blocking threads of the sessions' runtime carry this name (in `top -H`, perf, /proc).
pub const IO_THREAD_NAME: &str = "hoist-io";

/// A current-thread runtime (the sessions' arbiter) whose blocking pool runs at `nice`, with
/// at most `max_threads` threads.
///
/// Those threads copy request bodies into the page cache, fsync them and commit offsets:
/// bulk work that can wait a little. The HTTP workers, which parse requests and answer
/// HEADs, keep the default priority, so under load a HEAD no longer queues behind body
/// copies for a core (benchmark scenario 5 on 2 cores: HEADs within 5 ms as the client sees
/// them went from 85 % to 98 %, and the load carried rose). 0 keeps the default priority.
///
/// Tokio's default of 512 threads let the pool grow to a thread per upload and more (111 in
/// scenario 5 with 50 uploads at once), all runnable at once on two cores: their combined
/// share of the CPU kept the HTTP workers waiting for a core (scheduling delay p99 ~2 ms per
/// wake-up, `perf sched`), and the arbiter queued on the pool's own lock to hand them work.
pub fn sessions_runtime(nice: u8, max_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(IO_THREAD_NAME)
        .max_blocking_threads(max_threads.max(1))
        .on_thread_start(move || lower_this_thread(nice))
        .build()
}

#[cfg(target_os = "linux")]
fn lower_this_thread(nice: u8) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority reads no memory of ours; on Linux, PRIO_PROCESS with who = 0 sets
    // the calling thread only. Raising one's own nice needs no privilege; if it fails anyway
    // the thread just keeps the default priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, i32::from(nice.min(19)));
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_thread(_nice: u8) {}
