//! The JSON shapes of the REST API. Binary values are lower-case hex; times are milliseconds
//! since the Unix epoch; field sets are lists of field names.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Submit one signed transaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The signed transaction, canonical encoding, hex.
    pub tx: String,
    /// Wait until it is committed (default) or answer 202 once it is handed to its chain.
    #[serde(default = "yes")]
    pub wait: bool,
}

/// Submit several signed transactions (any chains); answered with one receipt each, in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Signed transactions, canonical encoding, hex.
    pub txs: Vec<String>,
    /// Wait until each is committed (default).
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// What became of a submitted transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptJson {
    /// Transaction id, hex.
    pub tx_id: String,
    /// The chain it was sent to.
    pub chain: u32,
    /// `committed` (in a block, see `outcome`), `rejected` (refused before any block; `outcome`
    /// says why), `pending` (not waited for), or `unavailable` (no answer in time: send it again).
    pub status: String,
    /// `valid` when it took effect, else the stable reject code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Block height, when committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Position in the block, when committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// The receipts of a batch, in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One per submitted transaction.
    pub receipts: Vec<ReceiptJson>,
}

/// One field of a licence as the chain holds it: no value, only commitment and ciphertext.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SealedFieldJson {
    /// Position in the schema.
    pub index: u16,
    /// Field name.
    pub name: String,
    /// Salted commitment, hex.
    pub commitment: String,
    /// `nonce ‖ XChaCha20-Poly1305(salt ‖ value)` under the field key, hex (what a grantee
    /// decrypts with a released key).
    pub ciphertext: String,
}

/// A licence record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LicenceJson {
    /// Licence id, hex (its first 4 bytes name its chain).
    pub id: String,
    /// The chain holding it.
    pub chain: u32,
    /// Licence type code.
    pub licence_type: String,
    /// Contract version it was issued under.
    pub contract_version: u32,
    /// Holder id, hex.
    pub holder: String,
    /// Issuing member's code.
    pub issuer: String,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// True when past the end of validity at the time of the answer.
    pub expired: bool,
    /// Start of validity.
    pub valid_from: u64,
    /// End of validity (0: none).
    pub valid_to: u64,
    /// Block time of issuance.
    pub issued_at: u64,
    /// Block time of the last change.
    pub updated_at: u64,
    /// Last transaction that changed it, hex.
    pub last_tx: String,
    /// Sealed fields.
    pub fields: Vec<SealedFieldJson>,
    /// The data key sealed to the holder, hex.
    pub holder_envelope: String,
}

/// A grant record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantJson {
    /// Grant id (its transaction id), hex.
    pub id: String,
    /// The chain holding it.
    pub chain: u32,
    /// Licence, hex.
    pub licence: String,
    /// Holder id, hex.
    pub holder: String,
    /// Grantee member's code.
    pub grantee: String,
    /// Service item code.
    pub item: String,
    /// Granted field names.
    pub fields: Vec<String>,
    /// Window start.
    pub not_before: u64,
    /// Window end.
    pub not_after: u64,
    /// Most uses (0: no limit).
    pub max_uses: u32,
    /// Uses so far.
    pub uses: u32,
    /// Revoked by the holder.
    pub revoked: bool,
    /// Block time of the grant.
    pub created_at: u64,
    /// Field keys sealed for release against a recorded use, hex.
    pub envelope: String,
}

/// One recorded use of a holder's licence.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TraceJson {
    /// The chain it was recorded on.
    pub chain: u32,
    /// Grant used, hex.
    pub grant: String,
    /// Licence read, hex.
    pub licence: String,
    /// Member who read.
    pub grantee: String,
    /// Service item code.
    pub item: String,
    /// Field names read.
    pub fields: Vec<String>,
    /// Block time.
    pub time: u64,
    /// The use transaction, hex.
    pub tx: String,
}

/// A holder's traces across every chain, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TracesJson {
    /// Holder id, hex.
    pub holder: String,
    /// Chains asked.
    pub chains: Vec<u32>,
    /// The traces.
    pub traces: Vec<TraceJson>,
}

/// A holder's licences across every chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HolderLicencesJson {
    /// Holder id, hex.
    pub holder: String,
    /// The licences.
    pub licences: Vec<LicenceJson>,
}

/// A fresh challenge for a holder to sign.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeJson {
    /// The challenge, hex. Sign `blake3_derive("elchain 2026 holder query v1", challenge ‖ holder id)`.
    pub challenge: String,
    /// It is refused after this time.
    pub expires_at: u64,
}

/// A transaction's place in its chain, with everything to check it offline.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProofJson {
    /// Transaction id, hex.
    pub tx_id: String,
    /// Chain.
    pub chain: u32,
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// `valid` or the reject code.
    pub outcome: String,
    /// Block header hash, hex.
    pub header_hash: String,
    /// Block header, canonical encoding, hex.
    pub header: String,
    /// Inclusion proof, canonical encoding, hex.
    pub proof: String,
    /// The block's checkpoint (replica signatures over the header), canonical encoding, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Nodes that signed the checkpoint.
    pub signers: Vec<u64>,
}

/// A block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockJson {
    /// Chain.
    pub chain: u32,
    /// Height.
    pub height: u64,
    /// Header hash, hex.
    pub hash: String,
    /// Previous header hash, hex.
    pub prev: String,
    /// Block time.
    pub time: u64,
    /// Merkle root of the transactions, hex.
    pub tx_root: String,
    /// Running state digest, hex.
    pub state_root: String,
    /// Transactions: id and outcome.
    pub txs: Vec<BlockTxJson>,
}

impl BlockJson {
    /// The JSON form of `b`, a block of `chain`.
    pub fn from_block(chain: u32, b: &elchain_types::block::Block) -> BlockJson {
        BlockJson {
            chain,
            height: b.header.height,
            hash: b.header.hash().to_hex(),
            prev: b.header.prev.to_hex(),
            time: b.header.time.0,
            tx_root: b.header.tx_root.to_hex(),
            state_root: b.header.state_root.to_hex(),
            txs: b
                .ids
                .iter()
                .zip(&b.outcomes)
                .map(|(id, o)| BlockTxJson { id: id.to_hex(), outcome: outcome_name(o.as_u16()) })
                .collect(),
        }
    }
}

/// `valid`, or the reject code's name (`code_N` for a code this build does not know).
pub fn outcome_name(code: u16) -> String {
    if code == 0 {
        "valid".into()
    } else {
        elchain_types::reason::RejectCode::from_u16(code)
            .map_or_else(|| format!("code_{code}"), |c| c.as_str().to_string())
    }
}

/// A transaction in a block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockTxJson {
    /// Id, hex.
    pub id: String,
    /// `valid` or the reject code.
    pub outcome: String,
}

/// A chain, its replicas and its state as its leader reports it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainJson {
    /// Chain id (0: the meta chain).
    pub id: u32,
    /// Replicas: node id and QUIC address.
    pub replicas: Vec<ReplicaJson>,
    /// Current leader, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    /// Height of the last block, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
}

/// A replica.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplicaJson {
    /// Node id.
    pub node: u64,
    /// QUIC address.
    pub addr: String,
}

/// The shard map.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShardMapJson {
    /// Version (increases with every change).
    pub version: u64,
    /// Bucket count.
    pub buckets: u32,
    /// Rules: type-specific first, then any-type.
    pub rules: Vec<RuleJson>,
}

/// A placement rule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleJson {
    /// Licence type code, or none for every type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licence_type: Option<String>,
    /// First bucket.
    pub from: u32,
    /// One past the last bucket.
    pub to: u32,
    /// Target chain.
    pub chain: u32,
}

/// Where a new licence goes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlacementJson {
    /// The chain.
    pub chain: u32,
    /// The holder's bucket.
    pub bucket: u32,
    /// Shard map version used.
    pub shard_map_version: u64,
}

/// A consortium member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberJson {
    /// Number used on chain.
    pub id: u16,
    /// Stable code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// `city_bureau` or `district`.
    pub kind: String,
    /// Consortium admin.
    pub admin: bool,
    /// Ed25519 signing key, hex.
    pub signing_key: String,
    /// X25519 encryption key, hex.
    pub encryption_key: String,
}

/// A licence type's contract.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContractJson {
    /// Number used on chain.
    pub id: u16,
    /// Stable code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Contract version.
    pub version: u32,
    /// `person` or `enterprise`.
    pub holder: String,
    /// Members that may issue it (codes).
    pub issuers: Vec<String>,
    /// Endorsements needed.
    pub endorse_k: u8,
    /// Members whose signatures count as endorsements (codes).
    pub endorsers: Vec<String>,
    /// Longest validity, days.
    pub max_validity_days: u32,
    /// May be renewed.
    pub renewable: bool,
    /// Field schema.
    pub fields: Vec<FieldJson>,
}

/// A field of a licence type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldJson {
    /// Name.
    pub name: String,
    /// `text`, `date`, `integer` or `digest`.
    pub kind: String,
    /// Must be present at issuance.
    pub required: bool,
}

/// A service item and the fields it may ask for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemJson {
    /// Number used on chain.
    pub id: u16,
    /// Stable code, e.g. `E001`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// `enterprise` or `personal`.
    pub kind: String,
    /// Licence type code → field names.
    pub needs: Vec<NeedJson>,
}

/// What an item needs of one licence type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NeedJson {
    /// Licence type code.
    pub licence_type: String,
    /// Field names.
    pub fields: Vec<String>,
}

/// Ask the authorisation service for the field keys of a committed use.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The chain holding the grant (the licence's chain).
    pub chain: u32,
    /// The committed use transaction's id, hex.
    pub use_tx: String,
}

/// Field keys released against a committed use, sealed to the grantee.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReleaseJson {
    /// The grant, hex.
    pub grant: String,
    /// The licence, hex.
    pub licence: String,
    /// The grantee's code.
    pub grantee: String,
    /// Granted field names.
    pub fields: Vec<String>,
    /// The use transaction, hex.
    pub use_tx: String,
    /// Block height of the use.
    pub use_height: u64,
    /// The field keys sealed to the grantee's X25519 key, hex.
    pub sealed_keys: String,
}

/// The authorisation service's public key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceKeyJson {
    /// X25519 key that grant envelopes are sealed to, hex.
    pub encryption_key: String,
}

/// Router health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthJson {
    /// `ok` or `degraded`.
    pub status: String,
    /// Meta-chain height of the cached view.
    pub meta_height: u64,
    /// Milliseconds since the meta chain was last read.
    pub meta_age_ms: u64,
    /// Shard map version (0: none yet).
    pub shard_map_version: u64,
    /// Licence chains known.
    pub chains: Vec<u32>,
}

/// The consortium in brief.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsortiumJson {
    /// Profile name.
    pub name: String,
    /// Distinct admin signatures a governance transaction needs.
    pub admin_k: u16,
    /// Admin member codes.
    pub admins: Vec<String>,
    /// Number of members.
    pub members: usize,
    /// Number of licence types.
    pub licence_types: usize,
    /// Number of service items.
    pub items: usize,
    /// Meta-chain height this view was read at.
    pub meta_height: u64,
}
