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

/// CPU time the calling thread has used so far (zero where it cannot be read): what a piece of
/// background work cost, which its wall time at a low priority on a busy machine does not say.
pub fn cpu_time() -> std::time::Duration {
    #[cfg(target_os = "linux")]
    {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes one timespec we own; the clock is the calling thread's own.
        #[allow(unsafe_code)]
        let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        if r == 0 {
            return std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32);
        }
    }
    std::time::Duration::ZERO
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn a_threads_cpu_time_counts_its_work_and_not_its_sleep() {
        let before = super::cpu_time();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = super::cpu_time() - before;
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let worked = super::cpu_time() - before - slept;
        assert!(slept < std::time::Duration::from_millis(20), "{slept:?} of CPU while sleeping");
        assert!(worked > std::time::Duration::from_millis(5), "{worked:?} of CPU for 50 ms of work");
    }
}
