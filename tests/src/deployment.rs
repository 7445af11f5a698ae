//! A whole local deployment for the API tests: meta chain 0 and licence chains on real node
//! processes, the chain directory and shard map set by admin-signed governance, and router
//! processes serving the REST API.

use std::net::SocketAddr;
use std::time::Duration;

use elchain_router::rest::{wait_healthy, RestClient};
use elchain_shard::node::rpc::ReceiptStatus;
use elchain_sim::cluster::{Cluster, Settings};
use elchain_sim::governance;
use elchain_types::codec::Encode;
use elchain_types::contract::Consortium;
use elchain_types::profile::Profile;

/// How long the tests wait for anything.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running deployment.
pub struct Deployment {
    /// The nodes and routers.
    pub cluster: Cluster,
    /// The sample consortium with development keys.
    pub consortium: Consortium,
    /// Router 1's REST client.
    pub rest: RestClient,
}

/// A free TCP port on loopback.
pub fn free_http() -> SocketAddr {
    elchain_sim::cluster::free_tcp()
}

/// Start `replicas` nodes serving the meta chain and `chains` licence chains, bootstrap the
/// meta chain, and start router 901 (REST at `Deployment::rest`).
pub fn start(replicas: u64, chains: u32) -> Deployment {
    start_with(replicas, Settings { chains, ..Settings::default() })
}

/// [`start`] with explicit cluster settings (`meta` is forced on).
pub fn start_with(replicas: u64, settings: Settings) -> Deployment {
    let mut cluster = Cluster::start(crate::elchain_bin(), replicas, Settings { meta: true, ..settings });
    let consortium = Profile::sample().into_dev_consortium().expect("sample consortium");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = cluster.client().await;
        for c in cluster.chains() {
            client.wait_leader(c, DEADLINE).await.expect("every chain elects a leader");
        }
        let infos: Vec<_> = cluster.chains().into_iter().map(|c| cluster.chain_info(c)).collect();
        let txs = governance::bootstrap(&consortium, &infos).expect("bootstrap transactions");
        let receipts = client.submit(0, txs.iter().map(Encode::to_bytes).collect(), DEADLINE).await.expect("bootstrap");
        for r in receipts {
            assert!(matches!(r.status, ReceiptStatus::Committed { outcome: 0, .. }), "bootstrap: {r:?}");
        }
        client.close().await;
    });
    let http = cluster.start_router(901, free_http());
    let rest = RestClient::new(&format!("http://{http}"), Duration::from_secs(30));
    wait_healthy(&rest, DEADLINE)
        .unwrap_or_else(|e| panic!("router 901 not healthy: {e}\n{}", cluster.router_log(901)));
    Deployment { cluster, consortium, rest }
}

/// A licence issued through the API, with what its issuer keeps.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The licence.
    pub licence: elchain_types::ids::LicenceId,
    /// Its chain.
    pub chain: u32,
    /// Licence type code.
    pub licence_type: String,
    /// The data key.
    pub data_key: elchain_types::crypto::DataKey,
    /// Plaintext values by field name.
    pub values: Vec<(String, Vec<u8>)>,
}

/// Now, in milliseconds.
pub fn now() -> elchain_types::ids::Timestamp {
    use std::time::{SystemTime, UNIX_EPOCH};
    elchain_types::ids::Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

fn ctx(chain: u32) -> elchain_types::client::TxContext {
    use rand_core::RngCore;
    elchain_types::client::TxContext {
        chain: elchain_types::ids::ChainId(chain),
        nonce: rand_core::OsRng.next_u64(),
        valid_until: now().plus_ms(30 * 60_000),
    }
}

/// The hash context of sample digests.
static SAMPLE: elchain_types::crypto::Domain = elchain_types::crypto::Domain::new("sample");

/// A plausible value for a field of `kind`.
pub fn sample_value(name: &str, kind: elchain_types::contract::FieldKind) -> Vec<u8> {
    use elchain_types::contract::FieldKind;
    match kind {
        FieldKind::Text => format!("sample {name}").into_bytes(),
        FieldKind::Date => b"2031-06-30".to_vec(),
        FieldKind::Integer => b"90417731".to_vec(),
        FieldKind::Digest => hex::encode(elchain_types::crypto::hash(&SAMPLE, &[name.as_bytes()])).into_bytes(),
    }
}

impl Deployment {
    /// Start new node processes `ids` serving a new chain `chain`, and wait until it has a
    /// leader. The meta chain does not know the chain until governance registers it.
    pub fn start_chain(&mut self, chain: u32, ids: &[u64]) {
        self.cluster.add_chain(chain, ids);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let client = self.cluster.client().await;
            client.set_replicas(chain, ids.to_vec());
            client.wait_leader(chain, DEADLINE).await.expect("the new chain elects a leader");
            client.close().await;
        });
    }

    /// A member's development key.
    pub fn member_key(&self, code: &str) -> elchain_types::crypto::Keypair {
        elchain_types::profile::dev_member_keypair(code)
    }

    /// An issuance of `licence_type` to `holder` on `chain`, signed by its first issuer and enough
    /// endorsers.
    pub fn issue_tx(
        &self,
        licence_type: &str,
        holder: &elchain_types::crypto::Keypair,
        chain: u32,
    ) -> (elchain_types::tx::SignedTx, Issued) {
        let c = &self.consortium;
        let ty = c.licence_type_by_code(licence_type).expect("known licence type");
        let values: Vec<(String, Vec<u8>)> =
            ty.fields.iter().map(|f| (f.name.clone(), sample_value(&f.name, f.kind))).collect();
        let refs: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let issuer = ty.issuers[0];
        let t = now();
        let draft = elchain_types::client::issue(
            ctx(chain),
            ty,
            issuer,
            holder.holder_id(),
            &holder.encryption_public(),
            &refs,
            (t, t.plus_ms(30 * elchain_types::ids::Timestamp::DAY_MS)),
            &mut rand_core::OsRng,
        )
        .expect("fields of the type");
        let mut tx = draft.body.seal().sign(&self.member_key(&c.member(issuer).expect("issuer").code));
        for e in ty.endorsers.iter().filter(|e| **e != issuer).take(ty.endorse_k as usize) {
            tx = tx.sign(&self.member_key(&c.member(*e).expect("endorser").code));
        }
        let issued = Issued {
            licence: draft.licence,
            chain,
            licence_type: licence_type.to_string(),
            data_key: draft.data_key,
            values,
        };
        (tx.done(), issued)
    }

    /// Issue `licence_type` to `holder` on the chain the router's placement names; panics unless
    /// it takes effect.
    pub fn issue(&self, licence_type: &str, holder: &elchain_types::crypto::Keypair) -> Issued {
        let chain = self.rest.placement(licence_type, &holder.holder_id()).expect("placement").chain;
        let (tx, issued) = self.issue_tx(licence_type, holder, chain);
        let r = self.rest.submit(&tx, true).unwrap_or_else(|e| panic!("issue {licence_type}: {e}"));
        assert_eq!(r.outcome.as_deref(), Some("valid"), "issue {licence_type}: {r:?}");
        issued
    }

    /// The holder's grant of `fields` of `issued` to `grantee` for `item`, its keys sealed in two
    /// layers: to the authorisation service, and inside to the grantee.
    pub fn grant_tx(
        &self,
        issued: &Issued,
        holder: &elchain_types::crypto::Keypair,
        grantee: &str,
        item: &str,
        fields: u64,
    ) -> elchain_types::tx::SignedTx {
        let c = &self.consortium;
        let member = c.member_by_code(grantee).expect("grantee");
        let service = self.rest.service_key().expect("service key");
        let t = now();
        let terms = elchain_types::client::GrantTerms {
            grantee: member.id,
            item: c.items.iter().find(|i| i.code == item).expect("item").id,
            fields,
            not_before: elchain_types::ids::Timestamp(t.0 - 60_000),
            not_after: t.plus_ms(elchain_types::ids::Timestamp::DAY_MS),
            max_uses: 0,
        };
        let body = elchain_types::client::grant_for_release(
            ctx(issued.chain),
            issued.licence,
            &issued.data_key,
            terms,
            &member.encryption_key,
            &service,
            &mut rand_core::OsRng,
        );
        body.seal().sign(holder).done()
    }

    /// A use of `fields` of `grant` on `chain`, signed by `grantee`.
    pub fn use_tx(&self, chain: u32, grant: &str, fields: u64, grantee: &str) -> elchain_types::tx::SignedTx {
        let g = elchain_types::ids::GrantId::from_hex(grant).expect("grant id");
        elchain_types::client::use_fields(ctx(chain), g, fields).seal().sign(&self.member_key(grantee)).done()
    }

    /// The holder's withdrawal of `grant` on `chain`.
    pub fn revoke_grant_tx(
        &self,
        chain: u32,
        grant: &str,
        holder: &elchain_types::crypto::Keypair,
    ) -> elchain_types::tx::SignedTx {
        use elchain_types::tx::{Payload, RevokeGrant, TxBody};
        let cx = ctx(chain);
        let g = elchain_types::ids::GrantId::from_hex(grant).expect("grant id");
        TxBody {
            chain: cx.chain,
            nonce: cx.nonce,
            valid_until: cx.valid_until,
            payload: Payload::RevokeGrant(RevokeGrant { grant: g }),
        }
        .seal()
        .sign(holder)
        .done()
    }

    /// An item that may ask for fields of `licence_type`, and the first `n` of those fields.
    pub fn item_for(&self, licence_type: &str, n: usize) -> (String, u64) {
        let c = &self.consortium;
        let ty = c.licence_type_by_code(licence_type).expect("known licence type");
        let item = c.items.iter().find(|i| i.allowed_fields(ty.id).count_ones() as usize >= n).expect("an item");
        let allowed = item.allowed_fields(ty.id);
        let mask = (0..64).filter(|i| allowed >> i & 1 == 1).take(n).fold(0u64, |m, i| m | 1 << i);
        (item.code.clone(), mask)
    }
}
