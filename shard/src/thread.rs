//! Thread scheduling.

/// Let the calling thread yield the CPU to the node's other threads (`nice` above 0): a store
/// flush (nice 10) is background work and signature verification (nice 5) is throughput work,
/// while the runtime threads that answer Raft RPCs and clients carry the latency. Linux only;
/// elsewhere it does nothing.
pub fn lower_this_threads_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's id; no memory is shared.
        #[allow(unsafe_code)]
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if r != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower this thread's priority");
        }
    }
}
