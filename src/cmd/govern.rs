//! `elchain govern`: consortium admins build, co-sign and submit governance transactions.
//!
//! A governance transaction (payload `Govern`, meta chain 0) takes effect only with the
//! signatures of `admin_k` distinct admin members. Admins sit in different departments, so the
//! transaction travels as a proposal file that each admin checks and signs in turn; nothing but
//! the finished, signed transaction goes to the router.
//!
//! ```text
//!  chain | shard-map | param | revoke-cert ──► FILE: { chain, body, id, summary, signatures: [] }
//!  sign FILE (admin 1) ─► sign FILE (admin 2) ─► … ─► submit FILE ─► POST /v1/transactions ─► block
//!  every load: body decodes ─► hashes to the id ─► summary describes it ─► every signature verifies
//! ```
//!
//! The signers sign the transaction id, which hashes the body alone, so the signatures can be
//! gathered in any order and the file needs no trust in whoever passed it on.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::ca::ReasonArg;
use super::clock::{now_ms, utc};
use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use elchain_router::json::{ChainJson, ContractJson, MemberJson, ShardMapJson};
use elchain_router::keyfile;
use elchain_router::rest::{RestClient, RestError};
use elchain_types::client::{govern, TxContext};
use elchain_types::codec::{Decode, Encode};
use elchain_types::crypto::{Keypair, PublicKey};
use elchain_types::ids::{ChainId, LicenceTypeId, Timestamp, TxId};
use elchain_types::profile::dev_member_keypair;
use elchain_types::shardmap::{ChainInfo, ReplicaInfo, Rule, ShardMap, DEFAULT_BUCKETS, MAX_ADDR, MAX_REPLICAS};
use elchain_types::tx::{is_param_name, limits, Govern, Payload, Signature, TxBody, ADMIN_K_PARAM};
use elchain_types::verify::{verify_one, SigItem};

/// How long a new proposal stays valid by default. The chain refuses a transaction whose
/// `valid_until` is more than an hour ahead of its block time, so signing and submitting must
/// finish within the hour; a few minutes are left for clocks that disagree.
const DEFAULT_VALID_MINUTES: u64 = 55;
/// Exit code when the router refuses.
const REFUSED: u8 = 1;
/// Most rules the summary of a shard map lists one by one.
const SUMMARY_RULES: usize = 16;

/// Arguments of `elchain govern`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples: scale out to chain 3 (its replicas already run) in a development deployment \
    (`elchain dev`):\n  \
    elchain govern chain --id 3 --replica 4=10.0.0.4:7000 --replica 5=10.0.0.5:7000 --replica 6=10.0.0.6:7000 \
    --out chain3.json\n  \
    elchain govern sign chain3.json --member city-services      # then each further admin, in turn\n  \
    elchain govern show chain3.json                              # what it does, and who signed\n  \
    elchain govern submit chain3.json\n  \
    elchain govern shard-map --chain 3 --buckets 0..1024 --out map.json   # sign and submit likewise\n\n\
    A proposal is valid for 55 minutes from its making (--valid-minutes, at most 59): every admin must sign it, \
    and it must be submitted, before then, so signing must finish within the hour (the chain refuses a \
    transaction valid for more than an hour ahead). Each load re-derives the id from the body and \
    re-verifies every signature, so a file changed on its way is refused.\n\n\
    Refusals by the router print `error: <code>: <detail>` (e.g. admin_quorum, stale_version, \
    invalid_governance) and exit 1; a proposal that fails its checks, a signer that may not sign, usage and I/O \
    errors exit 2.")]
pub struct Args {
    /// Base URL of the router's REST API.
    #[arg(long, global = true, env = "ELCHAIN_ROUTER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    router: String,
    /// Give up on an answer from the router after this many seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Propose to register a chain in the directory, or to replace its replica list.
    Chain(ChainArgs),
    /// Propose the next shard map: move buckets to a chain, or split them evenly over chains.
    ShardMap(ShardMapArgs),
    /// Propose to set a consortium parameter (`admin_k` sets how many admins governance needs).
    Param(ParamArgs),
    /// Propose to revoke a member or node certificate on the meta chain.
    RevokeCert(RevokeCertArgs),
    /// Check a proposal and add your admin signature to it (the file is rewritten).
    Sign(SignArgs),
    /// Check a proposal and print what it does, its id and who signed it.
    Show(FileArgs),
    /// Check a proposal and submit it with its signatures; prints the block it is in.
    Submit(FileArgs),
}

/// Where a new proposal goes, and its transaction envelope.
#[derive(Debug, clap::Args)]
struct Draft {
    /// Write the proposal to this file; admins then sign it in turn (`elchain govern sign FILE`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists (its signatures are lost).
    #[arg(long)]
    force: bool,
    /// Minutes the proposal stays valid: every admin must sign, and it must be submitted, within them. The chain
    /// refuses anything valid for more than an hour ahead.
    #[arg(long, value_name = "MIN", default_value_t = DEFAULT_VALID_MINUTES,
        value_parser = clap::value_parser!(u64).range(1..=59))]
    valid_minutes: u64,
    /// Transaction nonce (default: random); it only tells otherwise identical proposals apart.
    #[arg(long, value_name = "N")]
    nonce: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct ChainArgs {
    /// The chain (0 is the meta chain's own entry).
    #[arg(long, value_name = "N")]
    id: u32,
    /// A replica of the chain, as NODE=IP:PORT (its node id and QUIC address); repeat for each replica.
    #[arg(long = "replica", value_name = "NODE=IP:PORT", required = true, value_parser = parse_replica)]
    replicas: Vec<(u64, String)>,
    #[command(flatten)]
    draft: Draft,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["chain", "even"])))]
struct ShardMapArgs {
    /// Give buckets to this chain. It must be in the chain directory when the proposal is submitted (propose it
    /// with `govern chain` first).
    #[arg(long, value_name = "N", requires = "buckets")]
    chain: Option<u32>,
    /// The buckets to move, A..B: half open, within the map's bucket count (GET /v1/shard-map shows it).
    #[arg(long, value_name = "A..B", value_parser = parse_buckets, requires = "chain")]
    buckets: Option<Range<u32>>,
    /// Move the buckets of this licence type only (its code; GET /v1/contracts lists them). Default: every type
    /// without a rule of its own.
    #[arg(long = "type", value_name = "CODE", requires = "chain")]
    licence_type: Option<String>,
    /// Split every bucket evenly over --chains instead, every licence type alike: the first map, or a rebalance.
    #[arg(long, requires = "chains", conflicts_with = "chain")]
    even: bool,
    /// The licence chains of an --even map, comma-separated.
    #[arg(long, value_name = "N,…", value_delimiter = ',', requires = "even")]
    chains: Vec<u32>,
    /// Bucket count of an --even map (default: the current map's, or 4096 for the first map).
    #[arg(long, value_name = "N", requires = "even", value_parser = clap::value_parser!(u32).range(1..))]
    bucket_count: Option<u32>,
    #[command(flatten)]
    draft: Draft,
}

#[derive(Debug, clap::Args)]
struct ParamArgs {
    /// The parameter: 1 to 32 of a-z, 0-9 and _. `admin_k` sets how many distinct admins must sign governance.
    #[arg(long, value_name = "NAME", value_parser = parse_param_name)]
    name: String,
    /// Its new value.
    #[arg(long, value_name = "N")]
    value: u64,
    #[command(flatten)]
    draft: Draft,
}

#[derive(Debug, clap::Args)]
struct RevokeCertArgs {
    /// The certificate's serial number, hex (e.g. 0a, or 0A:1B as OpenSSL prints it; `elchain ca` prints it too).
    #[arg(long, value_name = "HEX", value_parser = parse_serial)]
    serial: Serial,
    /// Why the certificate is revoked (recorded as its RFC 5280 reason code).
    #[arg(long, value_enum, default_value_t = ReasonArg::Unspecified)]
    reason: ReasonArg,
    #[command(flatten)]
    draft: Draft,
}

/// A certificate serial number, big-endian bytes without leading zeros.
#[derive(Debug, Clone)]
struct Serial(Vec<u8>);

/// Who signs: an admin's key file, or (development only) an admin's development key.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Signer {
    /// Sign with this admin member's development key, derived from its code. DEVELOPMENT ONLY: works against
    /// `elchain dev` and test deployments, whose members use development keys.
    #[arg(long, value_name = "CODE")]
    member: Option<String>,
    /// Sign with an admin member's key file (from `elchain keygen` or `elchain ca issue-member`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    /// The proposal (from `govern chain`, `shard-map`, `param` or `revoke-cert`, or as another admin left it).
    file: PathBuf,
    #[command(flatten)]
    signer: Signer,
}

#[derive(Debug, clap::Args)]
struct FileArgs {
    /// The proposal.
    file: PathBuf,
}

/// Run a governance command. Refusals by the router exit 1 with `error: <code>: <detail>`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = args.router.clone();
    let api = Api { rest: RestClient::new(&args.router, Duration::from_secs(args.timeout.max(1))) };
    let result = match args.command {
        Command::Chain(a) => chain(&api, a),
        Command::ShardMap(a) => shard_map(&api, a),
        Command::Param(a) => param(a),
        Command::RevokeCert(a) => revoke_cert(a),
        Command::Sign(a) => sign(&api, a),
        Command::Show(a) => show(&api, &url, a),
        Command::Submit(a) => submit(&api, a),
    };
    let Err(e) = result else { return result };
    match e.chain().find_map(|c| c.downcast_ref::<RestError>()) {
        Some(RestError::Problem(p)) => {
            // A ledger refusal's detail starts with its code already.
            let detail = p.detail.strip_prefix(&format!("{}: ", p.code)).unwrap_or(&p.detail);
            eprintln!("error: {}: {detail}", p.code);
            if let Some(hint) = hint(&p.code) {
                eprintln!("hint: {hint}");
            }
            Ok(ExitCode::from(REFUSED))
        }
        Some(RestError::Unexpected { status, message }) => {
            eprintln!("error: http_{status}: {message}");
            Ok(ExitCode::from(REFUSED))
        }
        Some(RestError::Transport(_)) => {
            Err(e.context(format!("cannot reach the router at {url} (is it running? set --router or ELCHAIN_ROUTER)")))
        }
        None => Err(e),
    }
}

/// What to do about a governance refusal.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "admin_quorum" => {
            "fewer distinct admins signed than the consortium's admin_k: have more admins sign the file, then submit \
             it again (a refused proposal can be submitted again)"
        }
        "stale_version" => {
            "another change got there first (the shard map's version must be the current one plus 1): make the \
             proposal again from the current state and have it signed again"
        }
        "invalid_governance" => {
            "the meta chain refuses the change itself (e.g. a shard map naming a chain not in the directory, a \
             certificate revoked already, admin_k above the number of admins)"
        }
        "expired" => "the proposal's valid_until has passed: make it again and have it signed again",
        "replay" => "this very proposal has taken effect already",
        _ => return None,
    })
}

/// The router.
struct Api {
    rest: RestClient,
}

impl Api {
    fn members(&self) -> anyhow::Result<Vec<MemberJson>> {
        Ok(self.rest.get_json("/v1/members")?)
    }

    fn chains(&self) -> anyhow::Result<Vec<ChainJson>> {
        Ok(self.rest.get_json("/v1/chains")?)
    }

    /// The current shard map as the meta chain holds it (licence types by id), if there is one.
    fn shard_map(&self, contracts: &[ContractJson]) -> anyhow::Result<Option<ShardMap>> {
        let json: ShardMapJson = match self.rest.get_json("/v1/shard-map") {
            Ok(m) => m,
            Err(RestError::Problem(p)) if p.code == "no_shard_map" => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let rules = json
            .rules
            .iter()
            .map(|r| {
                let licence_type = match &r.licence_type {
                    None => None,
                    Some(code) => Some(type_id(contracts, code).ok_or_else(|| {
                        anyhow!("the router's shard map names licence type `{code}`, which GET /v1/contracts lacks")
                    })?),
                };
                Ok(Rule { licence_type, buckets: r.from..r.to, chain: ChainId(r.chain) })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let map = ShardMap { version: json.version, buckets: json.buckets, rules };
        map.validate().map_err(|e| anyhow!("the router's shard map version {} does not validate: {e}", map.version))?;
        Ok(Some(map))
    }
}

/// A licence type's id from its code (or the router's `type-N` for a type it cannot name).
fn type_id(contracts: &[ContractJson], code: &str) -> Option<LicenceTypeId> {
    contracts
        .iter()
        .find(|c| c.code == code)
        .map(|c| LicenceTypeId(c.id))
        .or_else(|| code.strip_prefix("type-")?.parse().ok().map(LicenceTypeId))
}

/// The proposal file, as written and passed around.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalFile {
    /// Always 0: governance goes to the meta chain.
    chain: u32,
    /// The canonical body bytes, hex: what the id hashes.
    body: String,
    /// The transaction id, hex: what admins sign.
    id: String,
    /// What the body does, in words (re-derived from the body and compared on every load).
    summary: String,
    /// The signatures so far.
    #[serde(default)]
    signatures: Vec<SignatureJson>,
}

/// One admin's signature in a proposal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureJson {
    /// The signer's member code.
    member: String,
    /// The signer's Ed25519 public key, hex.
    key: String,
    /// The signature over the id, hex.
    sig: String,
}

/// A proposal that passed its checks: the body hashes to the id and every signature verifies.
struct Proposal {
    body: TxBody,
    id: TxId,
    summary: String,
    /// (member code as the file names it, signature), in signing order.
    signatures: Vec<(String, Signature)>,
}

impl Proposal {
    /// A new proposal for `action`, unsigned.
    fn new(action: Govern, draft: &Draft) -> Self {
        let ctx = TxContext {
            chain: ChainId::META,
            nonce: draft.nonce.unwrap_or_else(|| OsRng.next_u64()),
            valid_until: Timestamp(now_ms() + draft.valid_minutes * 60_000),
        };
        let summary = describe(&action);
        let body = govern(ctx, action);
        let id = body.clone().seal().id();
        Proposal { body, id, summary, signatures: Vec::new() }
    }

    /// Read and check a proposal file.
    fn load(path: &Path) -> anyhow::Result<Self> {
        let p = path.display();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {p}"))?;
        let f: ProposalFile = serde_json::from_str(&text)
            .with_context(|| format!("{p} is not a governance proposal from `elchain govern`"))?;
        let refuse = |why: String| anyhow!("{p}: {why}; refusing the proposal");
        if f.chain != 0 {
            return Err(refuse(format!("it is for chain {}, but governance goes to the meta chain 0", f.chain)));
        }
        let bytes = hex::decode(f.body.trim()).map_err(|_| refuse("its body is not hex".into()))?;
        let body = TxBody::from_bytes(&bytes).map_err(|e| refuse(format!("its body does not decode: {e}")))?;
        let Payload::Govern(action) = &body.payload else {
            return Err(refuse(format!("its body is a {} transaction, not governance", body.payload.kind())));
        };
        if body.chain != ChainId::META {
            return Err(refuse(format!("its body is for chain {}, not the meta chain 0", body.chain)));
        }
        let id = body.clone().seal().id();
        if id.to_hex() != f.id.trim().to_ascii_lowercase() {
            return Err(refuse(format!(
                "its body hashes to id {id}, not to the id {} it names: the body or the id was changed after the \
                 proposal was made",
                f.id
            )));
        }
        let summary = describe(action);
        if f.summary != summary {
            return Err(refuse(format!(
                "its summary does not describe its body, which does this: {summary}; the summary was changed"
            )));
        }
        if f.signatures.len() > limits::MAX_SIGNATURES {
            return Err(refuse(format!(
                "it carries {} signatures; a transaction holds at most {}",
                f.signatures.len(),
                limits::MAX_SIGNATURES
            )));
        }
        let mut signatures: Vec<(String, Signature)> = Vec::with_capacity(f.signatures.len());
        for (i, s) in f.signatures.iter().enumerate() {
            let who = format!("signature {} (member `{}`)", i + 1, s.member);
            let mut key = [0u8; 32];
            hex::decode_to_slice(s.key.trim(), &mut key)
                .map_err(|_| refuse(format!("{who} has a key that is not 64 hex digits")))?;
            let mut sig = [0u8; 64];
            hex::decode_to_slice(s.sig.trim(), &mut sig).map_err(|_| refuse(format!("{who} is not 128 hex digits")))?;
            let key = PublicKey(key);
            if !verify_one(SigItem { key: &key, msg: &id.0, sig: &sig }) {
                return Err(refuse(format!(
                    "{who} does not verify against the proposal's id: it was changed, or signed something else"
                )));
            }
            if signatures.iter().any(|(_, o)| o.key == key) {
                return Err(refuse(format!("{who} repeats a key that signed already")));
            }
            signatures.push((s.member.clone(), Signature { key, sig }));
        }
        Ok(Proposal { body, id, summary, signatures })
    }

    /// Write the proposal to `path` atomically; refuse to replace a file unless `replace`.
    fn save(&self, path: &Path, replace: bool) -> anyhow::Result<()> {
        let p = path.display();
        if !replace && path.exists() {
            bail!("{p} already exists; pass --force to replace it");
        }
        let file = ProposalFile {
            chain: self.body.chain.0,
            body: hex::encode(self.body.to_bytes()),
            id: self.id.to_hex(),
            summary: self.summary.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|(member, s)| SignatureJson {
                    member: member.clone(),
                    key: s.key.to_hex(),
                    sig: hex::encode(s.sig),
                })
                .collect(),
        };
        let text = format!("{}\n", serde_json::to_string_pretty(&file)?);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(text.as_bytes())?;
            // Keep the permissions of the file replaced; a new proposal is public, readable by all.
            match std::fs::metadata(path) {
                Ok(m) => tmp.as_file().set_permissions(m.permissions())?,
                Err(_) => {
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
                    }
                }
            }
            tmp.as_file().sync_all()?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().with_context(|| format!("cannot write {p}"))
    }

    /// Refuse a proposal whose validity has passed.
    fn check_live(&self) -> anyhow::Result<()> {
        let until = self.body.valid_until.0;
        let now = now_ms();
        if until <= now {
            bail!(
                "proposal {} expired {} ago (it was valid until {} UTC) and the chain would refuse it: make it again \
                 and have it signed again",
                self.id,
                minutes(now - until),
                utc(until)
            );
        }
        Ok(())
    }

    /// The signed transaction.
    fn transaction(&self) -> elchain_types::tx::SignedTx {
        let mut tx = self.body.clone().seal();
        for (_, s) in &self.signatures {
            tx = tx.with_signature(*s);
        }
        tx.done()
    }
}

/// What a governance action does, in words: a function of the body alone, so a proposal's
/// summary can be checked against its body.
fn describe(action: &Govern) -> String {
    match action {
        Govern::Chain(c) => {
            let replicas: Vec<String> = c.replicas.iter().map(|r| format!("{}={}", r.node, r.addr)).collect();
            format!(
                "chain directory: chain {} served by replicas {} (registers the chain, or replaces its replica list)",
                c.id,
                replicas.join(", ")
            )
        }
        Govern::ShardMap(m) => {
            let mut rules: Vec<String> = m
                .rules
                .iter()
                .take(SUMMARY_RULES)
                .map(|r| {
                    let ty = r.licence_type.map_or_else(|| "every type".to_string(), |t| format!("type #{t}"));
                    format!("{ty} {}..{} → chain {}", r.buckets.start, r.buckets.end, r.chain)
                })
                .collect();
            if m.rules.len() > SUMMARY_RULES {
                rules.push(format!("and {} more rules", m.rules.len() - SUMMARY_RULES));
            }
            format!("shard map version {} over {} buckets: {}", m.version, m.buckets, rules.join(", "))
        }
        Govern::Member(m) => format!(
            "member #{} `{}` ({}): admin {}, signing key {} (adds the member, or replaces the one with this id)",
            m.id,
            m.code,
            m.name,
            if m.admin { "yes" } else { "no" },
            m.signing_key.to_hex()
        ),
        Govern::LicenceType(t) => format!(
            "licence type #{} `{}` ({}) version {} (adds the type, or a new version of it)",
            t.id, t.code, t.name, t.version
        ),
        Govern::Param { name, value } if name == ADMIN_K_PARAM => {
            format!("parameter {name} = {value}: governance then needs {value} distinct admins' signatures")
        }
        Govern::Param { name, value } => format!("parameter {name} = {value}"),
        Govern::RevokeCertificate { serial, reason } => {
            format!("revoke the certificate with serial {} (CRL reason code {reason})", hex::encode(serial))
        }
    }
}

/// Write a new proposal and say what comes next.
fn propose(action: Govern, draft: &Draft) -> anyhow::Result<ExitCode> {
    let p = Proposal::new(action, draft);
    p.save(&draft.out, draft.force)?;
    let out = draft.out.display();
    println!("wrote proposal {out}: {}", p.summary);
    println!("id: {}", p.id);
    println!(
        "valid until {} UTC ({} minutes): every admin must sign, and it must be submitted, by then",
        utc(p.body.valid_until.0),
        draft.valid_minutes
    );
    println!(
        "next: each admin checks it (`elchain govern show {out}`) and signs it (`elchain govern sign {out} --key \
         KEYFILE`), then `elchain govern submit {out}`"
    );
    Ok(ExitCode::SUCCESS)
}

fn chain(api: &Api, a: ChainArgs) -> anyhow::Result<ExitCode> {
    let mut replicas: Vec<ReplicaInfo> =
        a.replicas.iter().map(|(node, addr)| ReplicaInfo { node: *node, addr: addr.clone() }).collect();
    replicas.sort_by_key(|r| r.node);
    if let Some(w) = replicas.windows(2).find(|w| w[0].node == w[1].node) {
        bail!("replica {} is given twice", w[0].node);
    }
    if replicas.len() > MAX_REPLICAS {
        bail!("a chain has at most {MAX_REPLICAS} replicas; {} are given", replicas.len());
    }
    let info = ChainInfo { id: ChainId(a.id), replicas };
    info.check()?;
    // What it changes, when the router can say; the proposal does not depend on it.
    match api.chains() {
        Ok(chains) => match chains.iter().find(|c| c.id == a.id) {
            Some(c) => {
                let now: Vec<String> = c.replicas.iter().map(|r| format!("{}={}", r.node, r.addr)).collect();
                println!("chain {} is in the directory with replicas {}: this replaces them", a.id, now.join(", "));
            }
            None => println!("chain {} is not in the directory yet: this registers it", a.id),
        },
        Err(e) => println!("(could not read the chain directory from the router: {e:#})"),
    }
    propose(Govern::Chain(info), &a.draft)
}

fn shard_map(api: &Api, a: ShardMapArgs) -> anyhow::Result<ExitCode> {
    let contracts: Vec<ContractJson> = api.rest.get_json("/v1/contracts")?;
    let current = api.shard_map(&contracts)?;
    let map = if a.even {
        let mut chains: Vec<ChainId> = a.chains.iter().map(|c| ChainId(*c)).collect();
        chains.sort();
        if chains.windows(2).any(|w| w[0] == w[1]) {
            bail!("--chains names a chain twice");
        }
        if chains.contains(&ChainId::META) {
            bail!("--chains names the meta chain 0, which holds no licences");
        }
        let buckets = a.bucket_count.or(current.as_ref().map(|m| m.buckets)).unwrap_or(DEFAULT_BUCKETS);
        let mut map = ShardMap::even(&chains, buckets)
            .map_err(|e| anyhow!("cannot split {buckets} buckets over chains {:?}: {e}", a.chains))?;
        map.version = current.as_ref().map_or(1, |m| m.version + 1);
        map
    } else {
        let (Some(chain), Some(buckets)) = (a.chain, a.buckets.clone()) else {
            bail!("pass --chain N --buckets A..B, or --even --chains N,…");
        };
        if chain == 0 {
            bail!("--chain 0 is the meta chain, which holds no licences");
        }
        let current = current.as_ref().ok_or_else(|| {
            anyhow!("the meta chain has no shard map yet: propose the first with --even --chains N,…")
        })?;
        let ty = match &a.licence_type {
            Some(code) => Some(type_id(&contracts, code).ok_or_else(|| {
                let known = contracts.iter().map(|c| c.code.as_str()).collect::<Vec<_>>().join(", ");
                anyhow!("the consortium has no licence type `{code}`; its types: {known}")
            })?),
            None => None,
        };
        let map = current.reassign(ty, buckets.clone(), ChainId(chain)).map_err(|e| anyhow!("{e}"))?;
        let what = a.licence_type.as_deref().map_or_else(|| "every licence type".to_string(), |c| format!("`{c}`"));
        println!(
            "shard map version {} → {}: buckets {}..{} of {what} move to chain {chain} (from {})",
            current.version,
            map.version,
            buckets.start,
            buckets.end,
            moved_from(current, ty, &buckets)
        );
        map
    };
    // The meta chain refuses a map naming a chain outside its directory; say so now.
    if let Ok(chains) = api.chains() {
        let missing: Vec<String> =
            map.chains().iter().filter(|c| !chains.iter().any(|k| k.id == c.0)).map(|c| c.to_string()).collect();
        if !missing.is_empty() {
            println!(
                "note: chain(s) {} are not in the chain directory yet; the meta chain refuses this map \
                 (invalid_governance) until a `govern chain` proposal for each has been submitted",
                missing.join(", ")
            );
        }
    }
    propose(Govern::ShardMap(map), &a.draft)
}

/// Which chains `buckets` (of `ty`, or any type) are on now, as `A..B chain N` runs.
fn moved_from(map: &ShardMap, ty: Option<LicenceTypeId>, buckets: &Range<u32>) -> String {
    let chain_of = |b: u32| {
        let typed = ty.and_then(|t| map.rules.iter().find(|r| r.licence_type == Some(t) && r.buckets.contains(&b)));
        typed.or_else(|| map.rules.iter().find(|r| r.licence_type.is_none() && r.buckets.contains(&b))).map(|r| r.chain)
    };
    let mut runs: Vec<(u32, u32, Option<ChainId>)> = Vec::new();
    for b in buckets.clone() {
        let c = chain_of(b);
        match runs.last_mut() {
            Some((_, end, last)) if *last == c => *end = b + 1,
            _ => runs.push((b, b + 1, c)),
        }
    }
    runs.iter()
        .map(|(s, e, c)| format!("{s}..{e} on chain {}", c.map_or_else(|| "none".to_string(), |c| c.to_string())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn param(a: ParamArgs) -> anyhow::Result<ExitCode> {
    if a.name == ADMIN_K_PARAM && !(1..=u64::from(u16::MAX)).contains(&a.value) {
        bail!("admin_k must be 1 to the number of admins");
    }
    propose(Govern::Param { name: a.name, value: a.value }, &a.draft)
}

fn revoke_cert(a: RevokeCertArgs) -> anyhow::Result<ExitCode> {
    propose(Govern::RevokeCertificate { serial: a.serial.0, reason: a.reason.reason().code() }, &a.draft)
}

/// How the proposal's signatures stand against the consortium's members now.
struct Tally {
    /// Codes of the distinct admin members that signed.
    admins: Vec<String>,
    /// Admins in the consortium.
    total: usize,
    /// Signatures that will not count, and why.
    not_counting: Vec<String>,
}

impl Tally {
    /// Refuses a signature whose member code is not the member its key belongs to.
    fn of(p: &Proposal, members: &[MemberJson]) -> anyhow::Result<Self> {
        let total = members.iter().filter(|m| m.admin).count();
        let mut t = Tally { admins: Vec::new(), total, not_counting: Vec::new() };
        for (label, s) in &p.signatures {
            let key = s.key.to_hex();
            match members.iter().find(|m| m.signing_key == key) {
                Some(m) if m.code != *label => bail!(
                    "the proposal's signature by key {key} is labelled `{label}`, but that is member {}'s key: the \
                     file was changed; refusing the proposal",
                    m.code
                ),
                Some(m) if !m.admin => t.not_counting.push(format!("{}: not an admin", m.code)),
                Some(m) => t.admins.push(m.code.clone()),
                None => t.not_counting.push(format!("{label}: key {key} is no member's signing key now")),
            }
        }
        Ok(t)
    }

    /// `N signatures from admins (…), of M admins`.
    fn line(&self) -> String {
        let who = if self.admins.is_empty() { String::new() } else { format!(" ({})", self.admins.join(", ")) };
        format!(
            "{} signature(s) from admins{who}, of {} admins; the chain takes it once the consortium's admin_k \
             distinct admins have signed",
            self.admins.len(),
            self.total
        )
    }
}

impl Signer {
    /// The key pair and the member it belongs to.
    fn resolve<'m>(&self, members: &'m [MemberJson]) -> anyhow::Result<(Keypair, &'m MemberJson)> {
        if let Some(code) = &self.member {
            let m = members
                .iter()
                .find(|m| m.code == *code)
                .ok_or_else(|| anyhow!("the consortium has no member `{code}` (GET /v1/members lists them)"))?;
            let kp = dev_member_keypair(&m.code);
            if kp.public().to_hex() != m.signing_key {
                bail!(
                    "member {}'s signing key is not its development key: --member works only against development \
                     deployments (`elchain dev`); pass --key FILE instead",
                    m.code
                );
            }
            return Ok((kp, m));
        }
        let path = self.key.as_deref().ok_or_else(|| anyhow!("pass --member CODE or --key FILE"))?;
        let kp = keyfile::load(path)?;
        let key = kp.public().to_hex();
        let m = members
            .iter()
            .find(|m| m.signing_key == key)
            .ok_or_else(|| anyhow!("the key in {} is not the signing key of any member", path.display()))?;
        Ok((kp, m))
    }
}

fn sign(api: &Api, a: SignArgs) -> anyhow::Result<ExitCode> {
    let mut p = Proposal::load(&a.file)?;
    p.check_live()?;
    let members = api.members()?;
    let (kp, m) = a.signer.resolve(&members)?;
    let file = a.file.display();
    if !m.admin {
        bail!(
            "member {} is not a consortium admin: only admins' signatures count toward governance (GET /v1/members \
             shows `admin`); {file} is unchanged",
            m.code
        );
    }
    let tally = Tally::of(&p, &members)?;
    if tally.admins.contains(&m.code) || p.signatures.iter().any(|(_, s)| s.key == kp.public()) {
        bail!("member {} has signed {file} already; a second signature by one member adds nothing", m.code);
    }
    if p.signatures.len() >= limits::MAX_SIGNATURES {
        bail!("{file} carries {} signatures already, the most a transaction holds", limits::MAX_SIGNATURES);
    }
    let sig = Signature { key: kp.public(), sig: kp.sign(&p.id.0) };
    p.signatures.push((m.code.clone(), sig));
    p.save(&a.file, true)?;
    println!("{} signed {file}: {}", m.code, p.summary);
    println!("{}", Tally::of(&p, &members)?.line());
    Ok(ExitCode::SUCCESS)
}

fn show(api: &Api, url: &str, a: FileArgs) -> anyhow::Result<ExitCode> {
    let p = Proposal::load(&a.file)?;
    let until = p.body.valid_until.0;
    let now = now_ms();
    let left = if until > now {
        format!("{} left", minutes(until - now))
    } else {
        format!("EXPIRED {} ago: make it again", minutes(now - until))
    };
    println!("proposal:    {}", p.summary);
    println!("id:          {}", p.id);
    println!("chain:       {} (meta chain), nonce {}", p.body.chain, p.body.nonce);
    println!("valid until: {} UTC ({left})", utc(until));
    println!("signatures:  {} (each verifies against the id)", p.signatures.len());
    for (member, s) in &p.signatures {
        println!("  {member:<24} {}", s.key.to_hex());
    }
    match api.rest.get_json::<Vec<MemberJson>>("/v1/members") {
        Ok(members) => {
            let t = Tally::of(&p, &members)?;
            println!("{}", t.line());
            for n in &t.not_counting {
                println!("  does not count: {n}");
            }
        }
        Err(RestError::Transport(e)) => println!(
            "(the router at {url} did not answer ({e}): the signers are named as the file names them, not checked \
             against the consortium's members)"
        ),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn submit(api: &Api, a: FileArgs) -> anyhow::Result<ExitCode> {
    let p = Proposal::load(&a.file)?;
    if p.signatures.is_empty() {
        bail!("{} has no signature yet: admins sign it with `elchain govern sign`", a.file.display());
    }
    p.check_live()?;
    let tally = Tally::of(&p, &api.members()?)?;
    println!("{}", tally.line());
    for n in &tally.not_counting {
        println!("  does not count: {n}");
    }
    let tx = p.transaction();
    debug_assert_eq!(tx.id(), p.id);
    let r = api.rest.submit(&tx, true)?;
    let height = r.height.map_or_else(|| "?".to_string(), |h| h.to_string());
    println!("committed in block {height} of chain {} (tx {}): {}", r.chain, r.tx_id, p.summary);
    Ok(ExitCode::SUCCESS)
}

fn parse_replica(s: &str) -> Result<(u64, String), String> {
    let (node, addr) = s.split_once('=').ok_or("expected NODE=IP:PORT, e.g. 4=10.0.0.4:7000")?;
    let node = node.trim().parse::<u64>().map_err(|_| format!("`{node}` is not a node id"))?;
    let addr = addr
        .trim()
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("`{addr}` is not IP:PORT (the node's QUIC address; host names are not allowed)"))?
        .to_string();
    if addr.len() > MAX_ADDR {
        return Err(format!("`{addr}` is longer than {MAX_ADDR} bytes"));
    }
    Ok((node, addr))
}

fn parse_buckets(s: &str) -> Result<Range<u32>, String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("expected A..B, e.g. 0..1024, got `{s}`"))?;
    let a = a.trim().parse::<u32>().map_err(|_| format!("`{a}` is not a bucket number"))?;
    let b = b.trim().parse::<u32>().map_err(|_| format!("`{b}` is not a bucket number"))?;
    if a >= b {
        return Err(format!("{a}..{b} is empty: the end is one past the last bucket"));
    }
    Ok(a..b)
}

fn parse_param_name(s: &str) -> Result<String, String> {
    if is_param_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not a parameter name: 1 to {} of a-z, 0-9 and _", limits::MAX_PARAM_NAME))
    }
}

fn parse_serial(s: &str) -> Result<Serial, String> {
    let serial = elchain_shard::ca::parse_serial_hex(s).map_err(|e| e.to_string())?;
    if serial.is_empty() || serial.len() > limits::MAX_SERIAL {
        return Err(format!("a certificate serial is 1 to {} bytes and not zero", limits::MAX_SERIAL));
    }
    Ok(Serial(serial))
}

/// A duration in whole minutes (or seconds, under one), for people.
fn minutes(ms: u64) -> String {
    match ms / 60_000 {
        0 => format!("{} s", ms / 1000),
        m => format!("{m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(out: PathBuf) -> Draft {
        Draft { out, force: false, valid_minutes: DEFAULT_VALID_MINUTES, nonce: Some(7) }
    }

    #[test]
    fn a_proposal_round_trips_and_any_change_to_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let action = Govern::Param { name: "max_batch".into(), value: 9 };
        let mut p = Proposal::new(action, &draft(path.clone()));
        let admin = dev_member_keypair("city-services");
        p.signatures.push(("city-services".into(), Signature { key: admin.public(), sig: admin.sign(&p.id.0) }));
        p.save(&path, false).unwrap();
        assert!(p.save(&path, false).is_err(), "an existing file is not replaced without --force");
        let back = Proposal::load(&path).unwrap();
        assert_eq!((back.id, back.signatures.len()), (p.id, 1));
        assert_eq!(back.transaction().id(), p.id);

        let text = std::fs::read_to_string(&path).unwrap();
        let mut f: ProposalFile = serde_json::from_str(&text).unwrap();
        let body = f.body.clone();
        let edit = |f: &ProposalFile| {
            std::fs::write(&path, serde_json::to_string(f).unwrap()).unwrap();
            format!("{:#}", Proposal::load(&path).err().expect("refused"))
        };
        // A changed body no longer hashes to the id.
        let mut bytes = hex::decode(&body).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        f.body = hex::encode(&bytes);
        assert!(edit(&f).contains("hashes to id"));
        // A changed body with its new id: the signature no longer verifies.
        let changed = TxBody::from_bytes(&bytes).unwrap();
        f.id = changed.clone().seal().id().to_hex();
        f.summary = describe(match &changed.payload {
            Payload::Govern(g) => g,
            _ => unreachable!(),
        });
        assert!(edit(&f).contains("does not verify"));
        // A summary that says something else.
        f.body = body;
        f.id = p.id.to_hex();
        f.summary = "nothing to see".into();
        assert!(edit(&f).contains("summary"));
    }

    #[test]
    fn arguments_parse_with_useful_errors() {
        assert_eq!(parse_buckets("0..1024"), Ok(0..1024));
        assert!(parse_buckets("5..5").unwrap_err().contains("empty"));
        assert_eq!(parse_replica("4=127.0.0.1:7004"), Ok((4, "127.0.0.1:7004".into())));
        assert!(parse_replica("4=n4.elchain:7000").unwrap_err().contains("IP:PORT"));
        assert!(parse_param_name("Admin-K").is_err());
        assert_eq!(parse_serial("0A:1B").unwrap().0, [0x0a, 0x1b]);
        assert!(parse_serial("00").is_err());
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56");
    }
}
