//! The authorisation rules, checked again over a chain's blocks by a model of their own.
//!
//! ```text
//!  block 1 … tip (reference replica) ─► each transaction the chain marked valid ─► Rules model
//!     licences: status, validity, holder          grants: window, uses, fields, revoked
//!  a valid transaction the model would have refused ─► Violation::RuleBroken
//! ```
//!
//! The executor enforces these rules when it builds a block; this module is a second, smaller
//! implementation written from the rules, not from the executor, so a bug in the executor (or a
//! block applied without it) shows up as a broken rule: a use after its grant was revoked,
//! outside the grant's window, beyond its uses or fields, of a suspended, revoked or expired
//! licence; a revocation of a grant by someone other than its holder; a status change the life
//! cycle does not allow. Signatures, endorsements and contracts are not modelled: `elchain verify
//! --replay` re-executes those, and the audit checks the hash chain.

use std::collections::HashMap;

use elchain_shard::state::LicenceStatus;
use elchain_types::block::Block;
use elchain_types::codec::Decode;
use elchain_types::ids::{GrantId, HolderId, LicenceId, Timestamp};
use elchain_types::tx::{Payload, SignedTx};

struct Licence {
    status: LicenceStatus,
    /// 0: no expiry.
    valid_to: Timestamp,
    holder: HolderId,
}

impl Licence {
    fn usable(&self, now: Timestamp) -> Result<(), &'static str> {
        match self.status {
            LicenceStatus::Suspended => Err("the licence is suspended"),
            LicenceStatus::Revoked => Err("the licence is revoked"),
            LicenceStatus::Active if self.valid_to.0 != 0 && now > self.valid_to => Err("the licence has expired"),
            LicenceStatus::Active => Ok(()),
        }
    }
}

struct Grant {
    licence: LicenceId,
    holder: HolderId,
    fields: u64,
    not_before: Timestamp,
    not_after: Timestamp,
    max_uses: u32,
    uses: u32,
    revoked: bool,
}

/// A rule a valid transaction broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// Height of its block.
    pub height: u64,
    /// Transaction id (hex).
    pub tx: String,
    /// The rule, in words.
    pub rule: String,
}

/// The model: fed the blocks of one chain in order.
#[derive(Default)]
pub struct Rules {
    licences: HashMap<LicenceId, Licence>,
    grants: HashMap<GrantId, Grant>,
    uses: u64,
}

impl Rules {
    /// An empty chain.
    pub fn new() -> Rules {
        Rules::default()
    }

    /// Valid uses checked so far.
    pub fn uses_checked(&self) -> u64 {
        self.uses
    }

    /// Check the valid transactions of the block at `height` and apply them to the model.
    pub fn add_block(&mut self, height: u64, block: &Block) -> Vec<Broken> {
        let now = block.header.time;
        let mut out = Vec::new();
        for ((raw, id), outcome) in block.txs.iter().zip(&block.ids).zip(&block.outcomes) {
            if !outcome.is_valid() {
                continue;
            }
            let broken = |rule: &str| Broken { height, tx: id.to_hex(), rule: rule.to_string() };
            let Ok(tx) = SignedTx::from_bytes(raw) else {
                out.push(broken("an undecodable transaction was marked valid"));
                continue;
            };
            if let Err(rule) = self.apply(&tx, now) {
                out.push(broken(&rule));
            }
        }
        out
    }

    fn signed_by(tx: &SignedTx, holder: &HolderId) -> bool {
        tx.signatures().iter().any(|s| s.key.holder_id() == *holder)
    }

    fn licence(&mut self, id: &LicenceId) -> Result<&mut Licence, String> {
        self.licences.get_mut(id).ok_or_else(|| format!("licence {} does not exist", id.to_hex()))
    }

    fn apply(&mut self, tx: &SignedTx, now: Timestamp) -> Result<(), String> {
        match &tx.body().payload {
            Payload::Issue(p) => {
                if self.licences.contains_key(&p.licence) {
                    return Err("a licence id was issued twice".into());
                }
                self.licences.insert(
                    p.licence,
                    Licence { status: LicenceStatus::Active, valid_to: p.valid_to, holder: p.holder },
                );
            }
            Payload::Renew(p) => {
                let l = self.licence(&p.licence)?;
                if l.status != LicenceStatus::Active {
                    return Err("a licence that is not active was renewed".into());
                }
                l.valid_to = p.valid_to;
            }
            Payload::Amend(p) => {
                let status = self.licence(&p.licence)?.status;
                if status != LicenceStatus::Active {
                    return Err("a licence that is not active was amended".into());
                }
            }
            Payload::Suspend(p) => {
                let l = self.licence(&p.licence)?;
                if l.status != LicenceStatus::Active {
                    return Err(format!("a {:?} licence was suspended", l.status).to_lowercase());
                }
                l.status = LicenceStatus::Suspended;
            }
            Payload::Reinstate(p) => {
                let l = self.licence(&p.licence)?;
                if l.status != LicenceStatus::Suspended {
                    return Err(format!("a {:?} licence was reinstated", l.status).to_lowercase());
                }
                l.status = LicenceStatus::Active;
            }
            Payload::Revoke(p) => {
                let l = self.licence(&p.licence)?;
                if l.status == LicenceStatus::Revoked {
                    return Err("a revoked licence was revoked again".into());
                }
                l.status = LicenceStatus::Revoked;
            }
            Payload::Grant(p) => {
                let l = self.licence(&p.licence)?;
                let holder = l.holder;
                if !Self::signed_by(tx, &holder) {
                    return Err("a grant was not signed by the licence's holder".into());
                }
                l.usable(now).map_err(|why| format!("a grant was made while {why}"))?;
                if p.fields == 0 || p.not_after <= p.not_before || p.not_after <= now {
                    return Err("a grant with no fields or an empty window was accepted".into());
                }
                self.grants.insert(
                    GrantId::from(tx.id()),
                    Grant {
                        licence: p.licence,
                        holder,
                        fields: p.fields,
                        not_before: p.not_before,
                        not_after: p.not_after,
                        max_uses: p.max_uses,
                        uses: 0,
                        revoked: false,
                    },
                );
            }
            Payload::RevokeGrant(p) => {
                let g = self.grants.get_mut(&p.grant).ok_or("an unknown grant was revoked")?;
                if !tx.signatures().iter().any(|s| s.key.holder_id() == g.holder) {
                    return Err("a grant was revoked by someone other than its holder".into());
                }
                if g.revoked {
                    return Err("a grant was revoked twice".into());
                }
                g.revoked = true;
            }
            Payload::Use(p) => {
                self.uses += 1;
                let g = self.grants.get_mut(&p.grant).ok_or("a use of an unknown grant was accepted")?;
                if g.revoked {
                    return Err("a use was accepted after its grant was revoked".into());
                }
                if now < g.not_before || now > g.not_after {
                    return Err("a use was accepted outside its grant's window".into());
                }
                if g.max_uses != 0 && g.uses >= g.max_uses {
                    return Err(format!("a use was accepted beyond its grant's {} uses", g.max_uses));
                }
                if p.fields == 0 || p.fields & !g.fields != 0 {
                    return Err("a use read fields its grant does not give".into());
                }
                g.uses += 1;
                let licence = g.licence;
                let l = self.licence(&licence)?;
                l.usable(now).map_err(|why| format!("a use was accepted while {why}"))?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use elchain_shard::{Ledger, LogPosition};
    use elchain_types::block::Block;
    use elchain_types::codec::Encode;
    use elchain_types::ids::ChainId;
    use elchain_types::profile::Profile;
    use elchain_types::reason::Outcome;
    use elchain_types::tx::{Payload, RevokeGrant, TxBody};

    use super::*;
    use crate::Workload;

    const T0: u64 = 1_800_000_000_000;

    fn blocks() -> Vec<Block> {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::create(&dir.path().join("chain.redb"), ChainId(1), c.clone(), Timestamp(T0), 1).unwrap();
        let mut w = Workload::new(c, ChainId(1), 5, 100);
        let mut out = Vec::new();
        for b in 0..6u64 {
            let now = Timestamp(T0 + 1000 * (b + 1));
            let raws = w.batch(200, now).iter().map(Encode::to_bytes).collect();
            out.push(ledger.append(raws, now, LogPosition::default()).unwrap().block);
        }
        out
    }

    #[test]
    fn the_executors_blocks_break_no_rule() {
        let mut rules = Rules::new();
        for (h, b) in blocks().iter().enumerate() {
            assert_eq!(rules.add_block(h as u64 + 1, b), vec![]);
        }
        assert!(rules.uses_checked() > 100, "{} uses", rules.uses_checked());
    }

    #[test]
    fn a_use_marked_valid_after_its_grant_was_revoked_is_reported() {
        let blocks = blocks();
        let mut rules = Rules::new();
        for (h, b) in blocks.iter().enumerate() {
            rules.add_block(h as u64 + 1, b);
        }
        // Take a valid use, revoke its grant (signed by its holder), then mark the use valid again.
        let last = blocks.last().unwrap();
        let (raw, _) = last
            .txs
            .iter()
            .zip(&last.outcomes)
            .find(|(raw, o)| {
                **o == Outcome::Valid && matches!(SignedTx::from_bytes(raw).unwrap().body().payload, Payload::Use(_))
            })
            .unwrap();
        let used = SignedTx::from_bytes(raw).unwrap();
        let Payload::Use(u) = &used.body().payload else { unreachable!() };
        let holder = rules.grants[&u.grant].holder;
        let key = (0..100).map(Workload::holder_key).find(|k| k.holder_id() == holder).unwrap();
        let revoke = TxBody {
            chain: ChainId(1),
            nonce: 999_999,
            valid_until: Timestamp(T0 + 600_000),
            payload: Payload::RevokeGrant(RevokeGrant { grant: u.grant }),
        }
        .seal()
        .sign(&key)
        .done();
        let mut forged = last.clone();
        forged.header.time = Timestamp(T0 + 10_000);
        forged.txs = vec![revoke.to_bytes(), used.to_bytes()];
        forged.ids = vec![revoke.id(), used.id()];
        forged.outcomes = vec![Outcome::Valid, Outcome::Valid];
        let broken = rules.add_block(7, &forged);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert_eq!(broken[0].rule, "a use was accepted after its grant was revoked");
        assert_eq!(broken[0].tx, used.id().to_hex());
    }
}
