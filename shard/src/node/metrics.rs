//! The Prometheus `/metrics` endpoint of a node.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::routing::get;

use super::replica::Replica;

/// Render every chain's figures in the Prometheus text format.
pub fn render(node: u64, replicas: &HashMap<u32, Arc<Replica>>) -> String {
    let mut out = String::new();
    let mut chains: Vec<_> = replicas.iter().collect();
    chains.sort_by_key(|(id, _)| **id);
    let mut metric = |name: &str, help: &str, kind: &str, value: &dyn Fn(&Replica) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (chain, r) in &chains {
            let _ = writeln!(out, "{name}{{node=\"{node}\",chain=\"{chain}\"}} {}", value(r));
        }
    };
    metric("elchain_applied_height", "Height of the last applied block.", "gauge", &|r| r.status().height as f64);
    metric("elchain_applied_index", "Last applied Raft log index.", "gauge", &|r| r.status().applied_index as f64);
    metric("elchain_commit_index", "Last committed Raft log index known to this node.", "gauge", &|r| {
        r.raft().metrics().borrow().last_log_index.unwrap_or(0) as f64
    });
    metric("elchain_term", "Current Raft term.", "gauge", &|r| r.status().term as f64);
    metric("elchain_is_leader", "1 when this node leads the chain.", "gauge", &|r| {
        f64::from(u8::from(r.status().leader == Some(r.status().node)))
    });
    metric("elchain_leader", "Node id of the current leader (0: none known).", "gauge", &|r| {
        r.status().leader.unwrap_or(0) as f64
    });
    metric("elchain_committed_txs_total", "Transactions committed while this node led.", "counter", &|r| {
        r.metrics.committed_txs.load(Ordering::Relaxed) as f64
    });
    metric("elchain_rejected_txs_total", "Transactions refused at admission.", "counter", &|r| {
        r.metrics.rejected_txs.load(Ordering::Relaxed) as f64
    });
    metric("elchain_proposed_blocks_total", "Blocks proposed by this node.", "counter", &|r| {
        r.metrics.proposed_blocks.load(Ordering::Relaxed) as f64
    });
    metric("elchain_verify_queue", "Transactions waiting for signature verification.", "gauge", &|r| {
        r.metrics.verify_queue.load(Ordering::Relaxed) as f64
    });
    metric(
        "elchain_log_appends_total",
        "Fsynced writes of the Raft log, each holding every append queued while the previous one ran.",
        "counter",
        &|r| r.metrics.log.appends.load(Ordering::Relaxed) as f64,
    );
    metric(
        "elchain_log_fsync_seconds_total",
        "Time the Raft log's writer spent encoding, writing and fsyncing appends.",
        "counter",
        &|r| r.metrics.log.append_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
    let apply = |r: &Replica| r.metrics.apply.clone();
    metric("elchain_apply_batches_total", "Apply calls, each one chain-store write transaction.", "counter", &|r| {
        apply(r).batches.load(Ordering::Relaxed) as f64
    });
    metric("elchain_apply_blocks_total", "Blocks applied.", "counter", &|r| {
        apply(r).blocks.load(Ordering::Relaxed) as f64
    });
    metric("elchain_apply_txs_total", "Transactions applied.", "counter", &|r| {
        apply(r).txs.load(Ordering::Relaxed) as f64
    });
    metric("elchain_apply_verify_seconds_total", "Time spent verifying signatures at apply.", "counter", &|r| {
        apply(r).verify_micros.load(Ordering::Relaxed) as f64 / 1e6
    });
    metric("elchain_apply_execute_seconds_total", "Time spent executing blocks.", "counter", &|r| {
        apply(r).execute_micros.load(Ordering::Relaxed) as f64 / 1e6
    });
    metric("elchain_apply_commit_seconds_total", "Time spent committing blocks to the chain store.", "counter", &|r| {
        apply(r).commit_micros.load(Ordering::Relaxed) as f64 / 1e6
    });
    metric(
        "elchain_store_syncs_total",
        "Writes of applied blocks to the chain store (fsynced or not).",
        "counter",
        &|r| apply(r).store_syncs.load(Ordering::Relaxed) as f64,
    );
    metric(
        "elchain_apply_store_wait_seconds_total",
        "Time applying paused or waited because writes of the chain store were behind.",
        "counter",
        &|r| apply(r).store_wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
    out
}

/// Serve `/metrics` on `addr` until the task is aborted.
pub async fn serve(
    addr: SocketAddr,
    node: u64,
    replicas: Arc<HashMap<u32, Arc<Replica>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let replicas = replicas.clone();
            async move { render(node, &replicas) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    }))
}
