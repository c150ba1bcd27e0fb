//! How the process's allocator is set up before any thread starts.

/// Caps glibc's malloc arenas at `arenas`. glibc gives threads arenas of their own, up to
/// eight per core, and each arena keeps the memory freed into it for later allocations from
/// its threads: with the HTTP workers, the sessions' thread and the
/// `hoist-io` pool all allocating for request bodies, the arenas' peaks can add up where one
/// shared arena would have reused the same free memory. Call it before the first thread is
/// spawned: threads already attached to an arena keep it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_malloc_arenas(arenas: usize) {
    let Ok(arenas) = libc::c_int::try_from(arenas) else { return };
    // SAFETY: mallopt only sets an allocator parameter (under the allocator's own lock) and
    // reads no memory of ours. It returns 0 on failure, which leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other allocators size their arenas themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_malloc_arenas(_arenas: usize) {}
