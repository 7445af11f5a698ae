//! The `elchain` command: parse arguments, set up logging, hand over to a command.

mod cmd;

use clap::Parser;

// Every stage of a node's pipeline allocates per transaction (decoding, blocks, B-tree pages);
// mimalloc's thread-local free lists make that markedly cheaper than glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long memory stays free before mimalloc gives it back to the system.
///
/// mimalloc's default is one second, the chain store's default write interval: the page buffers
/// of one store write were returned just before the next write asked for them again, and every
/// one came back as a fresh page the kernel had to zero (5–6% of a busy node's CPU). Ten seconds
/// kept a node's steady working set mapped, but a store write comes every 7–10 s under load, and
/// on VMs whose host takes back the memory a guest frees, each page faulted in again costs far
/// more than zeroing: a minute keeps what one write freed for the next (three replicas, 60 s: page
/// faults 330–500k → 35–90k per run, 3–4% less CPU per transaction) and still hands back what a
/// burst left behind once a node is quiet.
const KEEP_FREED_MEMORY_MS: std::ffi::c_long = 60_000;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Unless `MIMALLOC_PURGE_DELAY` in the environment says otherwise.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one integer in mimalloc's option table, first thing in `main`, before any other
    // thread exists (the setter is not thread-safe); this option may change at run time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, KEEP_FREED_MEMORY_MS)
    };
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    let cli = cmd::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ELCHAIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log_level())),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The option index names the purge delay: it reads mimalloc 3's documented default for it,
    /// one second (no other option of mimalloc defaults to 1000).
    #[test]
    fn the_purge_delay_option_index_is_mimallocs() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one integer option.
        #[allow(unsafe_code)]
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
