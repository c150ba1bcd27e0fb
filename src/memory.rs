//! How the process's allocator is set up before any thread starts.

/// Caps glibc's malloc arenas at `arenas` (0: one per core). glibc gives threads their own
/// arenas up to eight per core, and each keeps the memory it freed for its own threads: with
/// the HTTP workers, the sessions' thread and the `hoist-io` pool passing request bodies
/// between them, chunks allocated in one arena are freed from threads attached to others, and
/// every arena holds its own slack at the peak. Call it before the first thread is spawned:
/// threads already attached to an arena keep it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas(arenas: usize) {
    let arenas = match arenas {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let Ok(arenas) = libc::c_int::try_from(arenas) else { return };
    // SAFETY: mallopt only sets an allocator parameter; no thread but this one exists yet.
    // It returns 0 on failure, which leaves glibc's default: nothing else depends on it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other allocators size their arenas themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas(_arenas: usize) {}
