//! The redb store: durability, reopening, receipts, audit, and agreement with the in-memory state.

use elchain_types::ids::{ChainId, MemberId, Timestamp};
use elchain_types::profile::Profile;
use redb::ReadableTable;

use super::*;
use crate::exec::tests::{replay_blocks, scripted_blocks};
use crate::ledger::Ledger;
use crate::state::StateReads;
use crate::LogPosition;

const T0: u64 = 1_800_000_000_000;

fn ledger(dir: &Path) -> Ledger {
    let c = Profile::sample().into_dev_consortium().unwrap();
    Ledger::create(&dir.join("chain.redb"), ChainId(1), c, Timestamp(T0), 2).unwrap()
}

fn fill(l: &Ledger, blocks: &[Vec<Vec<u8>>]) {
    for (i, b) in blocks.iter().enumerate() {
        l.append(b.clone(), Timestamp(T0 + i as u64 * 1000), LogPosition::default()).unwrap();
    }
}

#[test]
fn redb_and_memory_reach_the_same_state_root() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(3, 10);
    let l = ledger(dir.path());
    fill(&l, &blocks);
    let (mem_root, mem_state, _) = replay_blocks(&blocks);
    assert_eq!(l.tip().unwrap().state_root, mem_root);
    // Every entry of the in-memory state is in redb with the same bytes.
    let view = l.store().view().unwrap();
    for (k, v) in mem_state.iter() {
        assert_eq!(view.get(k).as_ref(), Some(v), "{k:?}");
    }
}

#[test]
fn reopening_keeps_every_block_and_the_tip() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(4, 6);
    let tip = {
        let l = ledger(dir.path());
        fill(&l, &blocks);
        l.tip().unwrap()
    };
    let l = Ledger::open(&dir.path().join("chain.redb"), 1).unwrap();
    assert_eq!(l.tip().unwrap(), tip);
    assert_eq!(l.store().block_count().unwrap(), 6);
    for h in 1..=6 {
        assert_eq!(l.store().block(h).unwrap().unwrap().txs, blocks[h as usize - 1]);
    }
    assert!(audit::audit(l.store(), |_| {}).unwrap().is_clean());
}

#[test]
fn a_copy_taken_while_open_holds_every_committed_block() {
    // What a power cut leaves: the file as it is on disk while the process still runs.
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(5, 5);
    let l = ledger(dir.path());
    fill(&l, &blocks);
    let copy = dir.path().join("crashed.redb");
    std::fs::copy(l.store().path(), &copy).unwrap();
    let crashed = Store::open(&copy).unwrap();
    assert_eq!(crashed.tip().unwrap(), l.tip().unwrap());
    let report = audit::audit(&crashed, |_| {}).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.blocks, 5);
}

#[test]
fn receipts_prove_inclusion_against_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(6, 4);
    let l = ledger(dir.path());
    fill(&l, &blocks);
    let block = l.store().block(2).unwrap().unwrap();
    for id in &block.ids {
        let r = l.store().receipt(id).unwrap().unwrap();
        assert!(r.proof.verify(&r.header));
        assert_eq!(r.header, l.store().block(r.height).unwrap().unwrap().header);
    }
}

#[test]
fn a_block_that_does_not_extend_the_tip_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let blocks = scripted_blocks(7, 2);
    let ex = l.append(blocks[0].clone(), Timestamp(T0), LogPosition::default()).unwrap();
    assert!(matches!(l.store().commit(&ex), Err(StoreError::NotNext { height: 1, tip: 1 })));
}

#[test]
fn audit_names_a_block_whose_stored_bytes_changed() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    fill(&l, &scripted_blocks(8, 5));
    // Change one signature byte of block 3 through redb itself.
    {
        let w = l.store().db().begin_write().unwrap();
        {
            let mut t = w.open_table(schema::BLOCKS).unwrap();
            let mut bytes = t.get(3).unwrap().unwrap().value().to_vec();
            let n = bytes.len();
            bytes[n - 40] ^= 1;
            t.insert(3, &bytes[..]).unwrap();
        }
        w.commit().unwrap();
    }
    let report = audit::audit(l.store(), |_| {}).unwrap();
    assert_eq!(report.first_bad.as_ref().map(|f| f.height), Some(3), "{report:?}");
}

#[test]
fn audit_finds_a_tx_index_entry_that_points_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    fill(&l, &scripted_blocks(9, 3));
    let id = l.store().block(1).unwrap().unwrap().ids[0];
    {
        let w = l.store().db().begin_write().unwrap();
        let elsewhere = crate::state::TxEntry { height: 2, index: 0, outcome: 0, trace: None };
        w.open_table(schema::TX_INDEX).unwrap().insert(&id.0[..], &elsewhere.to_bytes()[..]).unwrap();
        w.commit().unwrap();
    }
    let report = audit::audit(l.store(), |_| {}).unwrap();
    assert_eq!(report.first_bad.map(|f| f.height), Some(1), "the transaction at 1/0 took effect");
}

#[test]
fn opening_refuses_missing_files_other_versions_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Store::open(&dir.path().join("none.redb")), Err(StoreError::NotAStore { .. })));
    let l = ledger(dir.path());
    let path = l.store().path().to_path_buf();
    let c = l.consortium().clone();
    {
        let w = l.store().db().begin_write().unwrap();
        w.open_table(schema::META).unwrap().insert(schema::META_SCHEMA_VERSION, &99u32.to_le_bytes()[..]).unwrap();
        w.commit().unwrap();
    }
    drop(l);
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::SchemaVersion { found: 99, expected: SCHEMA_VERSION, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("--fresh"),
        "says which file and what to do: {msg}"
    );
    assert!(matches!(Store::create(&path, ChainId(1), &c, Timestamp(0)), Err(StoreError::Exists(_))));

    // A file that is not redb's: an error that names it, from the chain store and the Raft log.
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, b"not a chain store").unwrap();
    let e = Store::open(&garbage).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert!(e.to_string().contains(&garbage.display().to_string()), "names the file: {e}");
    let Err(e) = crate::raft::log_store::LogStore::open(&garbage) else { panic!("opened a Raft log from garbage") };
    assert!(matches!(e, StoreError::Open { .. }) && e.to_string().contains("garbage.redb"), "{e}");
}

#[test]
fn holder_licences_and_traces_are_listed_from_redb() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let blocks = scripted_blocks(10, 8);
    fill(&l, &blocks);
    let (_, mem, _) = replay_blocks(&blocks);
    let view = l.store().view().unwrap();
    for n in 0..5 {
        let h = elchain_types::crypto::Keypair::dev(&format!("person-{n}")).holder_id();
        assert_eq!(view.traces(&h), mem.traces(&h));
        let listed = l.store().holder_licences(&h).unwrap();
        assert!(listed.iter().all(|lic| view.licence(lic).unwrap().holder == h));
    }
}

#[test]
fn export_and_import_give_an_identical_chain() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    fill(&l, &scripted_blocks(11, 6));
    let bytes = l.store().export().unwrap();
    let copy = Store::import_from(&dir.path().join("copy.redb"), &bytes[..]).unwrap();
    assert_eq!(copy.tip().unwrap(), l.tip().unwrap());
    assert_eq!(copy.export().unwrap(), bytes);
    assert!(audit::audit(&copy, |_| {}).unwrap().is_clean());
    assert!(Store::import_from(&dir.path().join("bad.redb"), &bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn an_export_streams_to_a_file_and_a_cut_or_padded_one_is_refused_keeping_the_store_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    fill(&l, &scripted_blocks(16, 4));
    let file = dir.path().join("chain.snapshot-1");
    let written = l.store().begin_export().unwrap().write_to(&mut std::fs::File::create(&file).unwrap()).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(written, bytes.len() as u64);
    assert_eq!(bytes, l.store().export().unwrap());
    let target = dir.path().join("copy.redb");
    let copy = Store::import_from(&target, std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(copy.tip().unwrap(), l.tip().unwrap());
    drop(copy);
    let mut padded = bytes.clone();
    padded.push(0);
    for bad in [&bytes[..bytes.len() / 2], &padded[..]] {
        let e = Store::import_from(&target, bad).unwrap_err().to_string();
        assert!(e.contains("snapshot"), "{e}");
        // The store already there is untouched, and no half-written file is left beside it.
        assert_eq!(Store::open(&target).unwrap().tip().unwrap(), l.tip().unwrap());
        assert!(!target.with_extension("redb.importing").exists());
    }
}

#[test]
fn a_durable_flush_reads_the_metadata_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let blocks = scripted_blocks(17, 2);
    let ex = execute_next(&l, blocks[0].clone(), Timestamp(T0));
    l.store().stage(vec![ex.block.clone()], ex.writes, &[("applied", b"1")]).unwrap();
    let values = l.store().flush_durable_meta(&["applied", "absent"]).unwrap();
    assert_eq!(values, vec![Some(b"1".to_vec()), None]);
    assert_eq!(l.store().staged_blocks(), 0);
    assert_eq!(l.store().begin_export().unwrap().meta(&["applied"]).unwrap(), vec![Some(b"1".to_vec())]);
    // Written without an fsync, then made durable by the empty commit after it: a crash now
    // comes back with the block.
    assert!(!l.store().unsynced());
    assert_eq!(tip_after_a_crash(dir.path(), l.store(), "crashed.redb"), ex.block.header);
}

#[test]
fn replay_confirms_a_clean_chain_and_finds_a_forged_state_root() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let blocks = scripted_blocks(12, 5);
    fill(&l, &blocks[..3]);
    assert_eq!(audit::replay(l.store(), |_| {}).unwrap(), None);
    // A block whose header claims another state root, consistently hashed and linked: the
    // re-hashing audit cannot tell, re-execution can.
    let tip = l.tip().unwrap();
    let view = l.store().view().unwrap();
    let mut ex = crate::Executor::new(l.consortium(), ChainId(1)).execute(
        &view,
        &tip,
        Timestamp(T0 + 3000),
        LogPosition::default(),
        crate::Verifier::new(ChainId(1), 1, 64).check(blocks[3].clone()),
    );
    drop(view);
    ex.block.header.state_root.0[0] ^= 1;
    l.store().commit(&ex).unwrap();
    assert!(audit::audit(l.store(), |_| {}).unwrap().is_clean());
    let finding = audit::replay(l.store(), |_| {}).unwrap().expect("replay finds it");
    assert_eq!(finding.height, 4);
    assert!(finding.problem.contains("state root"), "{}", finding.problem);
}

#[test]
fn meta_chain_governance_survives_reopening_snapshots_and_replay() {
    use elchain_types::client::{govern, TxContext};
    use elchain_types::profile::dev_member_keypair;
    use elchain_types::shardmap::{ChainInfo, ReplicaInfo, ShardMap};
    use elchain_types::tx::Govern;

    let dir = tempfile::tempdir().unwrap();
    let c = Profile::sample().into_dev_consortium().unwrap();
    let admins: Vec<_> = c.admins().take(3).map(|m| dev_member_keypair(&m.code)).collect();
    let path = dir.path().join("meta.redb");
    let l = Ledger::create(&path, ChainId::META, c.clone(), Timestamp(T0), 1).unwrap();
    let rotated = elchain_types::crypto::Keypair::dev("rotated");
    let first = c.admins().next().unwrap().clone();
    let actions = [
        Govern::Chain(ChainInfo {
            id: ChainId(1),
            replicas: vec![ReplicaInfo { node: 1, addr: "10.0.0.1:7000".into() }],
        }),
        Govern::ShardMap(ShardMap::even(&[ChainId(1)], 64).unwrap()),
        Govern::Param { name: "max_block_txs".into(), value: 5000 },
        Govern::RevokeCertificate { serial: vec![1, 2], reason: 1 },
        Govern::Member(elchain_types::contract::Member { signing_key: rotated.public(), ..first }),
    ];
    for (i, action) in actions.into_iter().enumerate() {
        let ctx = TxContext { chain: ChainId::META, nonce: i as u64, valid_until: Timestamp(T0 + 60_000) };
        let tx = admins.iter().fold(govern(ctx, action).seal(), |tx, k| tx.sign(k)).done();
        let ex = l.append(vec![tx.to_bytes()], Timestamp(T0 + i as u64 * 1000), LogPosition::default()).unwrap();
        assert!(ex.block.outcomes[0].is_valid(), "{:?}", ex.block.outcomes);
    }
    drop(l);
    let l = Ledger::open(&path, 1).unwrap();
    let read = |view: &StoreView| {
        (view.governed_consortium(), view.shard_map(), view.chains(), view.params(), view.revoked_certificates())
    };
    let view = l.store().view().unwrap();
    let stored = read(&view);
    drop(view);
    assert_eq!(stored.0.as_ref().and_then(|c| c.member_by_key(&rotated.public())), Some(MemberId(1)));
    assert_eq!(stored.1.as_ref().map(|m| m.version), Some(1));
    assert_eq!((stored.2.len(), stored.3.len(), stored.4.len()), (1, 1, 1));
    // The genesis consortium stays in the metadata; the governed one is state.
    assert_eq!(l.store().consortium().unwrap(), c);
    let copy = Store::import_from(&dir.path().join("copy.redb"), &l.store().export().unwrap()[..]).unwrap();
    assert_eq!(read(&copy.view().unwrap()), stored);
    assert!(audit::audit(&copy, |_| {}).unwrap().is_clean());
    assert_eq!(audit::replay(&copy, |_| {}).unwrap(), None);
}

/// Execute `raws` as the next block over the store's current view, without committing.
fn execute_next(l: &Ledger, raws: Vec<Vec<u8>>, time: Timestamp) -> crate::exec::Executed {
    let tip = l.tip().unwrap();
    let view = l.store().view().unwrap();
    let checked = crate::Verifier::new(ChainId(1), 1, 64).check(raws);
    crate::Executor::new(l.consortium(), ChainId(1)).execute(&view, &tip, time, LogPosition::default(), checked)
}

#[test]
fn staged_blocks_are_read_like_written_ones_until_a_flush_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(13, 8);
    let (mem_root, mem_state, _) = replay_blocks(&blocks);
    let l = ledger(dir.path());
    fill(&l, &blocks[..2]);
    let written = l.tip().unwrap();
    // Stage the other six, three segments of two, the second while a view holds the first.
    let mut held = None;
    for (i, pair) in blocks[2..].chunks(2).enumerate() {
        let mut staged = Vec::new();
        let mut writes = crate::state::Writes::new();
        for (j, raws) in pair.iter().enumerate() {
            let at = Timestamp(T0 + (2 + 2 * i + j) as u64 * 1000);
            // Execute against staged state: stage each block before executing the next.
            let ex = execute_next(&l, raws.clone(), at);
            l.store().stage(vec![ex.block.clone()], ex.writes.clone(), &[("pos", &[i as u8])]).unwrap();
            staged.push(ex.block);
            writes.extend(ex.writes);
        }
        if i == 0 {
            held = Some(l.store().view().unwrap());
        }
    }
    assert_eq!(l.store().staged_blocks(), 6);
    assert_eq!(l.tip().unwrap().state_root, mem_root, "the staged tip is the tip");
    assert_eq!(l.store().get_meta("pos").unwrap(), Some(vec![2]));
    let view = l.store().view().unwrap();
    for (k, v) in mem_state.iter() {
        assert_eq!(view.get(k).as_ref(), Some(v), "{k:?}");
    }
    let last = l.store().block(8).unwrap().expect("a staged block is readable");
    assert_eq!(last.txs, blocks[7]);
    assert_eq!(l.store().header(8).unwrap(), Some(last.header));
    for id in &last.ids {
        let r = l.store().receipt(id).unwrap().expect("staged transactions have receipts");
        assert!(r.proof.verify(&r.header));
    }
    for n in 0..5 {
        let h = elchain_types::crypto::Keypair::dev(&format!("person-{n}")).holder_id();
        assert_eq!(view.traces(&h), mem_state.traces(&h));
        assert_eq!(view.holder_grants(&h), mem_state.holder_grants(&h));
    }
    drop(view);
    // A view taken earlier keeps its own state.
    assert_eq!(held.as_ref().unwrap().get(&crate::state::Key::Tx(last.ids[0])), None);
    drop(held);
    // Nothing staged is in the file yet: a copy of it is the chain as of block 2.
    let before = dir.path().join("before.redb");
    std::fs::copy(l.store().path(), &before).unwrap();
    assert_eq!(Store::open(&before).unwrap().tip().unwrap(), written);
    l.store().flush(Commit::Durable).unwrap();
    assert_eq!(l.store().staged_blocks(), 0);
    let after = dir.path().join("after.redb");
    std::fs::copy(l.store().path(), &after).unwrap();
    let copy = Store::open(&after).unwrap();
    assert_eq!(copy.tip().unwrap().state_root, mem_root);
    assert_eq!(copy.get_meta("pos").unwrap(), Some(vec![2]));
    let report = audit::audit(&copy, |_| {}).unwrap();
    assert!(report.is_clean() && report.blocks == 8, "{report:?}");
    assert_eq!(audit::replay(&copy, |_| {}).unwrap(), None);
}

#[test]
fn staging_refuses_a_block_that_does_not_extend_the_staged_tip() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(14, 2);
    let l = ledger(dir.path());
    let ex = execute_next(&l, blocks[0].clone(), Timestamp(T0));
    l.store().stage(vec![ex.block.clone()], ex.writes.clone(), &[]).unwrap();
    assert!(matches!(l.store().stage(vec![ex.block], ex.writes, &[]), Err(StoreError::NotNext { height: 1, tip: 1 })));
}

#[test]
fn exporting_writes_staged_blocks_first() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(15, 3);
    let l = ledger(dir.path());
    for (i, raws) in blocks.iter().enumerate() {
        let ex = execute_next(&l, raws.clone(), Timestamp(T0 + i as u64 * 1000));
        l.store().stage(vec![ex.block], ex.writes, &[]).unwrap();
    }
    let copy = Store::import_from(&dir.path().join("copy.redb"), &l.store().export().unwrap()[..]).unwrap();
    assert_eq!(l.store().staged_blocks(), 0);
    assert_eq!(copy.tip().unwrap(), l.tip().unwrap());
    assert_eq!(copy.tip().unwrap().height, 3);
}

/// The tip a crash now would come back at: that of a copy of the store's file (what the file
/// holds, without what is only staged), opened as `name` in `dir`.
fn tip_after_a_crash(dir: &Path, store: &Store, name: &str) -> BlockHeader {
    let to = dir.join(name);
    std::fs::copy(store.path(), &to).unwrap();
    Store::open(&to).unwrap().tip().unwrap()
}

#[test]
fn writes_between_fsyncs_reach_the_file_only_at_the_next_fsync_which_a_quiet_chain_still_gets() {
    use crate::raft::state_machine::StoreSync;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(5, 2);
    let l = ledger(dir.path());
    fill(&l, &blocks[..1]);
    let durable = l.tip().unwrap();
    let sync = StoreSync::with_fsync(Duration::from_millis(1), Duration::from_millis(300));
    let ex = execute_next(&l, blocks[1].clone(), Timestamp(T0 + 1000));
    l.store().stage(vec![ex.block.clone()], ex.writes, &[]).unwrap();
    sync.note_staged();
    std::thread::sleep(Duration::from_millis(5));
    // Due to be written, not yet to be fsynced: written without one, and handed to writeback.
    assert!(sync.flush_due(l.store()).unwrap());
    assert_eq!(l.store().staged_blocks(), 0);
    assert_eq!(l.tip().unwrap(), ex.block.header, "reads see the write");
    let copy = |name: &str| tip_after_a_crash(dir.path(), l.store(), name);
    assert_eq!(copy("unsynced.redb"), durable, "a crash now comes back at the last fsync");
    // Nothing new arrives (a quiet chain): once the fsync interval has passed, the write is
    // fsynced anyway.
    assert!(!sync.flush_due(l.store()).unwrap(), "nothing due before the fsync interval");
    std::thread::sleep(Duration::from_millis(310));
    assert!(sync.flush_due(l.store()).unwrap());
    assert_eq!(copy("synced.redb"), ex.block.header);
    assert!(!sync.flush_due(l.store()).unwrap(), "then nothing is left to do");
}

#[test]
fn a_store_knows_whether_a_commit_still_waits_for_an_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(7, 2);
    let l = ledger(dir.path());
    fill(&l, &blocks[..1]);
    assert!(!l.store().unsynced(), "durable commits leave nothing behind");
    let ex = execute_next(&l, blocks[1].clone(), Timestamp(T0 + 1000));
    l.store().stage(vec![ex.block], ex.writes, &[]).unwrap();
    l.store().flush(Commit::Deferred).unwrap();
    assert!(l.store().unsynced());
    // Nothing staged, but the deferred commit is made durable.
    l.store().flush(Commit::Durable).unwrap();
    assert!(!l.store().unsynced());
    let copy = dir.path().join("copy.redb");
    std::fs::copy(l.store().path(), &copy).unwrap();
    assert_eq!(Store::open(&copy).unwrap().tip().unwrap(), l.tip().unwrap());
}

#[test]
fn an_fsync_makes_what_was_written_durable_and_leaves_what_was_staged_since_for_the_next_write() {
    use crate::raft::state_machine::StoreSync;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(11, 3);
    let l = ledger(dir.path());
    fill(&l, &blocks[..1]);
    let copy = |name: &str| tip_after_a_crash(dir.path(), l.store(), name);
    // Written without an fsync and written back: still not durable.
    let first = execute_next(&l, blocks[1].clone(), Timestamp(T0 + 1000));
    l.store().stage(vec![first.block.clone()], first.writes, &[]).unwrap();
    l.store().flush(Commit::Deferred).unwrap();
    l.store().write_back();
    assert!(l.store().unsynced());
    // Staged after that write: the fsync is of the file as written, and this stays staged.
    let second = execute_next(&l, blocks[2].clone(), Timestamp(T0 + 2000));
    l.store().stage(vec![second.block.clone()], second.writes, &[]).unwrap();
    l.store().sync().unwrap();
    assert!(!l.store().unsynced());
    assert_eq!(l.store().staged_blocks(), 1);
    assert_eq!(copy("synced.redb"), first.block.header, "a crash now comes back at the first block");
    assert_eq!(l.tip().unwrap(), second.block.header, "reads still see the staged block");
    // A periodic write with an fsync due writes the staged block, then makes it durable.
    let sync = StoreSync::with_fsync(Duration::from_millis(1), Duration::from_millis(1));
    sync.note_staged();
    std::thread::sleep(Duration::from_millis(5));
    assert!(sync.flush_due(l.store()).unwrap());
    assert_eq!(l.store().staged_blocks(), 0);
    assert!(!l.store().unsynced());
    assert_eq!(copy("written.redb"), second.block.header);
}

#[test]
fn checkpoints_are_read_at_once_and_written_by_the_next_flush_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = scripted_blocks(15, 2);
    let l = ledger(dir.path());
    fill(&l, &blocks);
    let header = l.store().header(2).unwrap().unwrap();
    let sig = |node: u64| elchain_types::block::CheckpointSig {
        node,
        key: elchain_types::crypto::Keypair::dev(&format!("replica-{node}")).public(),
        sig: [node as u8; 64],
    };
    let cp = |nodes: &[u64]| elchain_types::block::Checkpoint {
        chain: ChainId(1),
        height: 2,
        header_hash: header.hash(),
        signatures: nodes.iter().map(|n| sig(*n)).collect(),
    };
    // A flush in progress holds redb's one write transaction; storing a checkpoint meanwhile
    // neither waits for it nor fails.
    let writer = l.store().db().begin_write().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            l.store().put_checkpoint(&cp(&[1, 2]));
            done.send(l.store().checkpoint(2).unwrap()).unwrap();
        });
        let seen =
            finished.recv_timeout(std::time::Duration::from_secs(10)).expect("put_checkpoint waited for a writer");
        assert_eq!(seen, Some(cp(&[1, 2])));
    });
    writer.abort().unwrap();
    assert_eq!(l.store().checkpoint_heights().unwrap(), vec![2]);
    // Not in the file until a flush writes it (the one with three signatures replaces the one with
    // two); then in the file, and no longer held in memory.
    let before = dir.path().join("before.redb");
    std::fs::copy(l.store().path(), &before).unwrap();
    assert_eq!(Store::open(&before).unwrap().checkpoint(2).unwrap(), None);
    l.store().put_checkpoint(&cp(&[1, 2, 3]));
    l.store().flush(Commit::Durable).unwrap();
    assert!(l.store().checkpoints.lock().unwrap().is_empty());
    let after = dir.path().join("after.redb");
    std::fs::copy(l.store().path(), &after).unwrap();
    let copy = Store::open(&after).unwrap();
    assert_eq!(copy.checkpoint(2).unwrap(), Some(cp(&[1, 2, 3])));
    assert_eq!(copy.checkpoint_heights().unwrap(), vec![2]);
}
