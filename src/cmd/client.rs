//! `elchain client`: licence operations over a router's REST API, signed locally.
//!
//! Every transaction is built and signed in this process with the signer's key file (or, in a
//! development deployment, a member's development key); only signed transactions and public
//! values go to the router. Field values are decrypted here too, with keys released to the
//! grantee against a recorded use.
//!
//! ```text
//!  issue:  contracts, members ─► seal fields, seal data key to holder ─► sign (issuer, endorsers) ─► submit
//!  grant:  licence ─► open data key (holder) ─► field keys sealed: grantee inside, service outside ─► submit
//!  use:    submit use (grantee) ─► POST /v1/release ─► open inner envelope ─► decrypt fields
//!  verify-receipt: header, inclusion proof, checkpoint signatures: offline
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::clock::{is_date, now_ms, utc};
use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use rand_core::{OsRng, RngCore};

use elchain_router::json::{
    ChainJson, ContractJson, GrantJson, ItemJson, LicenceJson, MemberJson, ProofJson, ReceiptJson,
};
use elchain_router::keyfile;
use elchain_router::rest::{self, RestClient, RestError};
use elchain_shard::net::PeerIdentity;
use elchain_types::block::{BlockHeader, Checkpoint, InclusionProof};
use elchain_types::client::{self, TxContext};
use elchain_types::codec::Decode;
use elchain_types::contract::{FieldKind, FieldSpec, HolderKind, LicenceType};
use elchain_types::crypto::{FieldKeys, Keypair, PublicKey};
use elchain_types::ids::{ChainId, GrantId, HolderId, ItemId, LicenceId, LicenceTypeId, MemberId, Timestamp, TxId};
use elchain_types::profile::dev_member_keypair;
use elchain_types::reason::Outcome;
use elchain_types::release;
use elchain_types::tx::{Payload, RevokeGrant, TxBody};

/// How long a signed transaction may wait to be included (the chain allows up to an hour).
const TX_LIFETIME_MS: u64 = 10 * 60 * 1000;
/// A grant starts this long before the local clock, so a chain whose clock is a little behind
/// still accepts a use right away.
const GRANT_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Exit code when the router refuses, or a receipt does not verify.
const REFUSED: u8 = 1;

/// Arguments of `elchain client`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples, against a development deployment (`elchain dev`):\n  \
    elchain keygen --out holder.key\n  \
    elchain client issue --type resident_id_card --holder-key holder.key --member public-security \\\n      \
    --field full_name='Li Hua' --field id_number=110101199003070011 …\n  \
    elchain client grant --licence LICENCE --holder-key holder.key --grantee market-regulation --item E001 \\\n      \
    --fields full_name,id_number\n  \
    elchain client use --grant GRANT --member market-regulation\n  \
    elchain client traces --holder-key holder.key\n  \
    elchain client receipt --tx TX --out receipt.json && elchain client verify-receipt receipt.json\n\n\
    Refusals by the router print `error: <code>: <detail>` and exit 1; usage and I/O errors exit 2.")]
pub struct Args {
    /// Base URL of the router's REST API.
    #[arg(long, global = true, env = "ELCHAIN_ROUTER", default_value = "http://127.0.0.1:8080", value_name = "URL")]
    router: String,
    /// Print JSON instead of a summary: the router's answer (for `issue`, with the licence id; for `use`, with
    /// the decrypted values).
    #[arg(long, global = true)]
    json: bool,
    /// Give up on an answer from the router after this many seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issue a licence to a holder (signed by an issuer of its type, and its endorsers).
    Issue(IssueArgs),
    /// Authorise a member to use chosen fields of a licence for a service item (signed by the holder).
    Grant(GrantArgs),
    /// Withdraw a grant (signed by the holder).
    RevokeGrant(RevokeGrantArgs),
    /// Use granted fields: record the use on chain, then fetch the released keys and decrypt the values
    /// (signed by the grantee).
    Use(UseArgs),
    /// List every recorded use of a holder's licences (signed by the holder).
    Traces(HolderArgs),
    /// List a holder's licences on every chain (signed by the holder).
    Licences(HolderArgs),
    /// Fetch a transaction's receipt: block header, inclusion proof and the replicas' checkpoint.
    Receipt(ReceiptArgs),
    /// Check a saved receipt offline: the transaction is in the block, and replicas signed the block.
    VerifyReceipt(VerifyArgs),
}

/// Who signs as a member: a key file, or (development only) the member's development key.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Signer {
    /// Sign with this member's development key, derived from its code. DEVELOPMENT ONLY: works
    /// against `elchain dev` and test deployments, whose members use development keys.
    #[arg(long, value_name = "CODE")]
    member: Option<String>,
    /// Sign with a member's key file (from `elchain keygen` or `elchain ca issue-member`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

/// The holder a licence is issued to: only public keys are needed.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct HolderPublic {
    /// The holder's key file (from `elchain keygen`); only its public keys are used.
    #[arg(long, value_name = "FILE")]
    holder_key: Option<PathBuf>,
    /// The holder's public keys: the `public key` and `encryption public key` that `elchain
    /// keygen` printed, joined by a colon.
    #[arg(long, value_name = "ED25519HEX:X25519HEX")]
    holder_pub: Option<String>,
}

#[derive(Debug, clap::Args)]
struct IssueArgs {
    /// Licence type code (GET /v1/contracts lists them), e.g. business_licence, resident_id_card.
    #[arg(long = "type", value_name = "CODE")]
    licence_type: String,
    #[command(flatten)]
    holder: HolderPublic,
    /// A field value, NAME=VALUE; repeat for each field. Every required field of the type must be
    /// given. Dates are YYYY-MM-DD, integers decimal, digests hex.
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
    /// Days of validity from now (default: the longest the type allows; types that never expire
    /// take none).
    #[arg(long, value_name = "N")]
    valid_days: Option<u32>,
    #[command(flatten)]
    signer: Signer,
    /// Endorse with this member's development key (repeat for each endorser). DEVELOPMENT ONLY.
    /// With --member and no endorser given, the type's first endorsers (other than the issuer)
    /// endorse, as many as it needs.
    #[arg(long, value_name = "CODE")]
    endorse: Vec<String>,
    /// Endorse with this member's key file (repeat for each endorser).
    #[arg(long, value_name = "FILE")]
    endorse_key: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct GrantArgs {
    /// The licence, hex.
    #[arg(long, value_name = "ID", value_parser = parse_licence)]
    licence: LicenceId,
    /// The holder's key file: it opens the licence's data key and signs the grant.
    #[arg(long, value_name = "FILE")]
    holder_key: PathBuf,
    /// The member allowed to use the fields (its code).
    #[arg(long, value_name = "CODE")]
    grantee: String,
    /// The service item the use is for (its code, e.g. E001; GET /v1/items lists them).
    #[arg(long, value_name = "CODE")]
    item: String,
    /// The fields granted, comma-separated; the item must be allowed to ask for each.
    #[arg(long, value_name = "NAME,…", value_delimiter = ',', required = true)]
    fields: Vec<String>,
    /// How many days the grant lasts.
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=365))]
    days: u32,
    /// Most uses (0: no limit within the days).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_uses: u32,
}

#[derive(Debug, clap::Args)]
struct RevokeGrantArgs {
    /// The grant (the id `client grant` printed), hex.
    #[arg(long, value_name = "ID", value_parser = parse_grant)]
    grant: GrantId,
    /// The grant's chain (default: asked of the router).
    #[arg(long, value_name = "N")]
    chain: Option<u32>,
    /// The holder's key file.
    #[arg(long, value_name = "FILE")]
    holder_key: PathBuf,
}

#[derive(Debug, clap::Args)]
struct UseArgs {
    /// The grant, hex.
    #[arg(long, value_name = "ID", value_parser = parse_grant)]
    grant: GrantId,
    /// The grant's chain (default: asked of the router).
    #[arg(long, value_name = "N")]
    chain: Option<u32>,
    /// The fields to read now, comma-separated (default: every granted field).
    #[arg(long, value_name = "NAME,…", value_delimiter = ',')]
    fields: Vec<String>,
    #[command(flatten)]
    signer: Signer,
    /// The licence the grant is for; refused if the grant names another.
    #[arg(long, value_name = "ID", value_parser = parse_licence)]
    licence: Option<LicenceId>,
}

#[derive(Debug, clap::Args)]
struct HolderArgs {
    /// The holder's key file: it signs the router's challenge.
    #[arg(long, value_name = "FILE")]
    holder_key: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReceiptArgs {
    /// The transaction, hex.
    #[arg(long, value_name = "ID", value_parser = parse_tx)]
    tx: TxId,
    /// Its chain (default: every chain is asked).
    #[arg(long, value_name = "N")]
    chain: Option<u32>,
    /// Write the receipt (JSON) to this file instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Wait up to this many seconds for a majority of the chain's replicas to sign the block.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    wait: u64,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// A receipt saved by `elchain client receipt --out FILE`.
    file: PathBuf,
    /// Distinct replicas whose valid signatures the block's checkpoint must carry.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    quorum: u64,
    /// A directory of node certificates (node-<id>.pem): only signatures by the key of a replica
    /// certificate with that node id count. Without it, the keys in the checkpoint are taken as
    /// they are.
    #[arg(long, value_name = "DIR")]
    node_certs: Option<PathBuf>,
    /// The consortium CA (its directory, or its ca.pem): node certificates it did not sign are
    /// refused.
    #[arg(long, value_name = "CA", requires = "node_certs")]
    ca: Option<PathBuf>,
}

/// Run a client command. Refusals by the router exit 1 with `error: <code>: <detail>`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = args.router.clone();
    let api = Api { rest: RestClient::new(&args.router, Duration::from_secs(args.timeout.max(1))), json: args.json };
    let result = match args.command {
        Command::Issue(a) => issue(&api, a),
        Command::Grant(a) => grant(&api, a),
        Command::RevokeGrant(a) => revoke_grant(&api, a),
        Command::Use(a) => use_fields(&api, a),
        Command::Traces(a) => traces(&api, a),
        Command::Licences(a) => licences(&api, a),
        Command::Receipt(a) => receipt(&api, a),
        Command::VerifyReceipt(a) => verify_receipt(a),
    };
    let Err(e) = result else { return result };
    match e.chain().find_map(|c| c.downcast_ref::<RestError>()) {
        Some(RestError::Problem(p)) => {
            // A ledger refusal's detail starts with its code already.
            let detail = p.detail.strip_prefix(&format!("{}: ", p.code)).unwrap_or(&p.detail);
            eprintln!("error: {}: {detail}", p.code);
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

/// The router, and how to print its answers.
struct Api {
    rest: RestClient,
    json: bool,
}

impl Api {
    fn members(&self) -> anyhow::Result<Vec<MemberJson>> {
        Ok(self.rest.get_json("/v1/members")?)
    }

    fn items(&self) -> anyhow::Result<Vec<ItemJson>> {
        Ok(self.rest.get_json("/v1/items")?)
    }

    fn contract(&self, code: &str) -> anyhow::Result<ContractJson> {
        let all: Vec<ContractJson> = self.rest.get_json("/v1/contracts")?;
        let known = all.iter().map(|c| c.code.as_str()).collect::<Vec<_>>().join(", ");
        all.into_iter()
            .find(|c| c.code == code)
            .ok_or_else(|| anyhow!("the consortium has no licence type `{code}`; its types: {known}"))
    }

    fn grant(&self, id: &GrantId, chain: Option<u32>) -> anyhow::Result<GrantJson> {
        let q = chain.map_or_else(String::new, |c| format!("?chain={c}"));
        Ok(self.rest.get_json(&format!("/v1/grants/{}{q}", id.to_hex()))?)
    }

    /// Print `value` as JSON when `--json` was given; true if it was.
    fn print_json(&self, value: &impl serde::Serialize) -> anyhow::Result<bool> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(self.json)
    }
}

impl Signer {
    /// The key pair and the member it belongs to.
    fn resolve<'m>(&self, members: &'m [MemberJson]) -> anyhow::Result<(Keypair, &'m MemberJson)> {
        if let Some(code) = &self.member {
            let m = member(members, code)?;
            return Ok((dev_key(m)?, m));
        }
        let path = self.key.as_deref().ok_or_else(|| anyhow!("pass --member CODE or --key FILE"))?;
        let kp = keyfile::load(path)?;
        let m = member_by_key(members, &kp)
            .ok_or_else(|| anyhow!("the key in {} is not the signing key of any member", path.display()))?;
        Ok((kp, m))
    }
}

impl HolderPublic {
    /// The holder id and the X25519 key the data key is sealed to.
    fn resolve(&self) -> anyhow::Result<(HolderId, [u8; 32])> {
        if let Some(path) = &self.holder_key {
            let kp = keyfile::load(path)?;
            return Ok((kp.holder_id(), kp.encryption_public()));
        }
        let s = self.holder_pub.as_deref().unwrap_or_default();
        let (ed, x) = s.split_once(':').ok_or_else(|| anyhow!("--holder-pub must be ED25519HEX:X25519HEX"))?;
        let ed = hex32(ed).map_err(|e| anyhow!("--holder-pub signing key: {e}"))?;
        let x = hex32(x).map_err(|e| anyhow!("--holder-pub encryption key: {e}"))?;
        Ok((PublicKey(ed).holder_id(), x))
    }
}

fn member<'m>(members: &'m [MemberJson], code: &str) -> anyhow::Result<&'m MemberJson> {
    members
        .iter()
        .find(|m| m.code == code)
        .ok_or_else(|| anyhow!("the consortium has no member `{code}` (GET /v1/members lists them)"))
}

fn member_by_key<'m>(members: &'m [MemberJson], kp: &Keypair) -> Option<&'m MemberJson> {
    let key = kp.public().to_hex();
    members.iter().find(|m| m.signing_key == key)
}

/// A member's development key, checked against the key the consortium has for it.
fn dev_key(m: &MemberJson) -> anyhow::Result<Keypair> {
    let kp = dev_member_keypair(&m.code);
    if kp.public().to_hex() != m.signing_key {
        bail!(
            "member {}'s signing key is not its development key: --member and --endorse work only against \
             development deployments (`elchain dev`); pass a key file instead",
            m.code
        );
    }
    Ok(kp)
}

/// The contract as the transaction builders need it: ids, version, field indexes.
fn licence_type(c: &ContractJson, members: &[MemberJson]) -> anyhow::Result<LicenceType> {
    let ids = |codes: &[String]| -> anyhow::Result<Vec<MemberId>> {
        codes.iter().map(|code| member(members, code).map(|m| MemberId(m.id))).collect()
    };
    let fields = c
        .fields
        .iter()
        .map(|f| {
            let kind = match f.kind.as_str() {
                "text" => FieldKind::Text,
                "date" => FieldKind::Date,
                "integer" => FieldKind::Integer,
                "digest" => FieldKind::Digest,
                other => bail!("field {} of {} has an unknown kind `{other}`", f.name, c.code),
            };
            Ok(FieldSpec { name: f.name.clone(), kind, required: f.required })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(LicenceType {
        id: LicenceTypeId(c.id),
        code: c.code.clone(),
        name: c.name.clone(),
        version: c.version,
        holder: if c.holder == "enterprise" { HolderKind::Enterprise } else { HolderKind::Person },
        issuers: ids(&c.issuers)?,
        endorse_k: c.endorse_k,
        endorsers: ids(&c.endorsers)?,
        max_validity_days: c.max_validity_days,
        renewable: c.renewable,
        fields,
    })
}

fn field_names(ty: &LicenceType) -> String {
    ty.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Check a value against its field's kind, as the contract asks clients to.
fn check_value(ty: &LicenceType, spec: &FieldSpec, value: &str) -> anyhow::Result<()> {
    let ok = match spec.kind {
        FieldKind::Text => !value.is_empty(),
        FieldKind::Date => is_date(value),
        FieldKind::Integer => {
            let digits = value.strip_prefix('-').unwrap_or(value);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
        FieldKind::Digest => !value.is_empty() && hex::decode(value).is_ok(),
    };
    if !ok {
        let want = match spec.kind {
            FieldKind::Text => "non-empty text",
            FieldKind::Date => "a date, YYYY-MM-DD",
            FieldKind::Integer => "a decimal integer",
            FieldKind::Digest => "a digest in hex",
        };
        bail!("field {} of {} must be {want}, got `{value}`", spec.name, ty.code);
    }
    Ok(())
}

fn issue(api: &Api, a: IssueArgs) -> anyhow::Result<ExitCode> {
    let members = api.members()?;
    let contract = api.contract(&a.licence_type)?;
    let ty = licence_type(&contract, &members)?;

    let mut values: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in &a.fields {
        let spec = ty.fields.iter().find(|f| f.name == *name).ok_or_else(|| {
            anyhow!("licence type {} has no field `{name}`; its fields: {}", ty.code, field_names(&ty))
        })?;
        if values.iter().any(|(n, _)| n == name) {
            bail!("field `{name}` is given twice");
        }
        check_value(&ty, spec, value)?;
        values.push((name.clone(), value.as_bytes().to_vec()));
    }
    let missing: Vec<&str> = ty
        .fields
        .iter()
        .filter(|f| f.required && !values.iter().any(|(n, _)| *n == f.name))
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        bail!("licence type {} requires the field(s) {}; give each as --field NAME=VALUE", ty.code, missing.join(", "));
    }

    let now = now_ms();
    let valid_to = match (ty.max_validity_days, a.valid_days) {
        (0, None) => 0,
        (0, Some(_)) => bail!("licences of type {} do not expire: leave out --valid-days", ty.code),
        (max, Some(d)) if d == 0 || d > max => bail!("--valid-days must be 1 to {max} for {}", ty.code),
        (max, d) => now + u64::from(d.unwrap_or(max)) * Timestamp::DAY_MS,
    };

    let (holder, holder_key) = a.holder.resolve()?;
    let (issuer_kp, issuer) = a.signer.resolve(&members)?;
    if !contract.issuers.contains(&issuer.code) {
        bail!("{} may not issue {}: its issuers are {}", issuer.code, ty.code, contract.issuers.join(", "));
    }
    let endorsers = endorsers(&a, &contract, issuer, &members)?;

    let placement = api.rest.placement(&ty.code, &holder)?;
    let refs: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    let draft = client::issue(
        tx_context(placement.chain),
        &ty,
        MemberId(issuer.id),
        holder,
        &holder_key,
        &refs,
        (Timestamp(now), Timestamp(valid_to)),
        &mut OsRng,
    )?;
    let mut signing = draft.body.seal().sign(&issuer_kp);
    for (kp, _) in &endorsers {
        signing = signing.sign(kp);
    }
    let r = api.rest.submit(&signing.done(), true)?;
    if api.print_json(&serde_json::json!({ "licence": draft.licence.to_hex(), "receipt": r }))? {
        return Ok(ExitCode::SUCCESS);
    }
    let endorsed = if endorsers.is_empty() {
        String::new()
    } else {
        format!(", endorsed by {}", endorsers.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>().join(", "))
    };
    println!("issued {} by {}{endorsed} to holder {}", ty.code, issuer.code, holder.to_hex());
    println!("licence: {}", draft.licence.to_hex());
    print_receipt(&r);
    Ok(ExitCode::SUCCESS)
}

/// The endorsers' key pairs and codes: as given, or with --member the type's first endorsers.
fn endorsers(
    a: &IssueArgs,
    contract: &ContractJson,
    issuer: &MemberJson,
    members: &[MemberJson],
) -> anyhow::Result<Vec<(Keypair, String)>> {
    let k = contract.endorse_k as usize;
    let mut out = Vec::new();
    for code in &a.endorse {
        out.push((dev_key(member(members, code)?)?, code.clone()));
    }
    for path in &a.endorse_key {
        let kp = keyfile::load(path)?;
        let m = member_by_key(members, &kp)
            .ok_or_else(|| anyhow!("the key in {} is not the signing key of any member", path.display()))?;
        out.push((kp, m.code.clone()));
    }
    if out.is_empty() && k > 0 {
        if a.signer.member.is_none() {
            bail!(
                "{} needs {k} endorsement(s) from its endorsers ({}): pass --endorse-key FILE for each",
                contract.code,
                contract.endorsers.join(", ")
            );
        }
        for code in contract.endorsers.iter().filter(|c| **c != issuer.code).take(k) {
            out.push((dev_key(member(members, code)?)?, code.clone()));
        }
    }
    let mut distinct: Vec<&str> = Vec::new();
    for (_, code) in &out {
        if *code == issuer.code {
            bail!("the issuer's own signature is not an endorsement: leave {code} out of the endorsers");
        }
        if !contract.endorsers.contains(code) {
            bail!("{code} does not endorse {}; its endorsers are {}", contract.code, contract.endorsers.join(", "));
        }
        if !distinct.contains(&code.as_str()) {
            distinct.push(code);
        }
    }
    if distinct.len() < k {
        bail!(
            "{} needs {k} endorsement(s) from distinct endorsers ({}), got {}",
            contract.code,
            contract.endorsers.join(", "),
            distinct.len()
        );
    }
    Ok(out)
}

fn grant(api: &Api, a: GrantArgs) -> anyhow::Result<ExitCode> {
    let holder = keyfile::load(&a.holder_key)?;
    let licence = api.rest.licence(&a.licence)?;
    if licence.holder != holder.holder_id().to_hex() {
        bail!(
            "licence {} belongs to holder {}, not to the holder of {} ({})",
            licence.id,
            licence.holder,
            a.holder_key.display(),
            holder.holder_id().to_hex()
        );
    }
    let members = api.members()?;
    let ty = licence_type(&api.contract(&licence.licence_type)?, &members)?;
    let grantee = member(&members, &a.grantee)?;
    let items = api.items()?;
    let item = items
        .iter()
        .find(|i| i.code == a.item)
        .ok_or_else(|| anyhow!("the consortium has no service item `{}` (GET /v1/items lists them)", a.item))?;
    let allowed = item
        .needs
        .iter()
        .find(|n| n.licence_type == ty.code)
        .map(|n| n.fields.as_slice())
        .ok_or_else(|| anyhow!("item {} ({}) asks for no field of a {}", item.code, item.name, ty.code))?;
    if let Some(f) = a.fields.iter().find(|f| !allowed.contains(f)) {
        bail!("item {} may ask only for {} of a {}, not `{f}`", item.code, allowed.join(", "), ty.code);
    }
    let names: Vec<&str> = a.fields.iter().map(String::as_str).collect();
    let mask = client::mask(&ty, &names)?;

    let envelope = hex::decode(&licence.holder_envelope).context("the licence's holder envelope is not hex")?;
    let data_key = client::open_data_key(&holder, &envelope)
        .map_err(|e| anyhow!("cannot open the licence's data key with {}: {e}", a.holder_key.display()))?;
    let keys = FieldKeys::for_mask(&data_key, &a.licence, mask);
    rest::open_fields(&licence, &keys).map_err(|e| anyhow!("the licence's data key does not open its fields: {e}"))?;
    let service = api.rest.service_key()?;
    let grantee_key = hex32(&grantee.encryption_key).map_err(|e| anyhow!("{}'s encryption key: {e}", grantee.code))?;
    let now = now_ms();
    let terms = client::GrantTerms {
        grantee: MemberId(grantee.id),
        item: ItemId(item.id),
        fields: mask,
        not_before: Timestamp(now.saturating_sub(GRANT_CLOCK_SKEW_MS)),
        not_after: Timestamp(now + u64::from(a.days) * Timestamp::DAY_MS),
        max_uses: a.max_uses,
    };
    let ctx = tx_context(licence.chain);
    let body = client::grant_for_release(ctx, a.licence, &data_key, terms, &grantee_key, &service, &mut OsRng);
    let r = api.rest.submit(&body.seal().sign(&holder).done(), true)?;
    if api.print_json(&r)? {
        return Ok(ExitCode::SUCCESS);
    }
    let uses = if a.max_uses == 0 { String::new() } else { format!(", at most {} use(s)", a.max_uses) };
    println!(
        "granted {} of licence {} to {} for item {} until {} UTC{uses}",
        a.fields.join(", "),
        licence.id,
        grantee.code,
        item.code,
        utc(terms.not_after.0)
    );
    println!("grant:   {}", r.tx_id);
    print_receipt(&r);
    Ok(ExitCode::SUCCESS)
}

fn revoke_grant(api: &Api, a: RevokeGrantArgs) -> anyhow::Result<ExitCode> {
    let holder = keyfile::load(&a.holder_key)?;
    let chain = match a.chain {
        Some(c) => c,
        None => api.grant(&a.grant, None)?.chain,
    };
    let ctx = tx_context(chain);
    let body = TxBody {
        chain: ctx.chain,
        nonce: ctx.nonce,
        valid_until: ctx.valid_until,
        payload: Payload::RevokeGrant(RevokeGrant { grant: a.grant }),
    };
    let r = api.rest.submit(&body.seal().sign(&holder).done(), true)?;
    if api.print_json(&r)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!("revoked grant {}", a.grant.to_hex());
    print_receipt(&r);
    Ok(ExitCode::SUCCESS)
}

fn use_fields(api: &Api, a: UseArgs) -> anyhow::Result<ExitCode> {
    let g = api.grant(&a.grant, a.chain)?;
    let licence_id = LicenceId::from_hex(&g.licence).context("the grant names a licence id that is not hex")?;
    if let Some(l) = a.licence.filter(|l| *l != licence_id) {
        bail!("grant {} is for licence {}, not {}", g.id, g.licence, l.to_hex());
    }
    let members = api.members()?;
    let (kp, grantee) = a.signer.resolve(&members)?;
    if grantee.code != g.grantee {
        bail!("grant {} is for {}, not {}: only the grantee may use it", g.id, g.grantee, grantee.code);
    }
    let fields = if a.fields.is_empty() { g.fields.clone() } else { a.fields.clone() };
    if let Some(f) = fields.iter().find(|f| !g.fields.contains(f)) {
        bail!("grant {} grants only {}, not `{f}`", g.id, g.fields.join(", "));
    }
    let licence = api.rest.licence(&licence_id)?;
    let ty = licence_type(&api.contract(&licence.licence_type)?, &members)?;
    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
    let mask = client::mask(&ty, &names)?;

    let tx = client::use_fields(tx_context(g.chain), a.grant, mask).seal().sign(&kp).done();
    let r = api.rest.submit(&tx, true)?;
    let released = api.rest.release(g.chain, &r.tx_id)?;
    let inner = hex::decode(&released.sealed_keys).context("the released keys are not hex")?;
    let keys = release::open_released(&kp, &inner)
        .map_err(|e| anyhow!("cannot open the released keys with {}'s key: {e}", grantee.code))?;
    let opened = rest::open_fields(&licence, &keys).map_err(|e| anyhow!("cannot decrypt the licence: {e}"))?;
    let values: Vec<(String, String)> =
        opened.into_iter().filter(|(n, _)| fields.contains(n)).map(|(n, v)| (n, printable(v))).collect();
    if api.json {
        let fields: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone()))).collect();
        api.print_json(&serde_json::json!({ "receipt": r, "release": released, "fields": fields }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for (name, value) in &values {
        println!("{name} = {value}");
    }
    if let Some(missing) = fields.iter().find(|f| !values.iter().any(|(n, _)| n == *f)) {
        println!("({missing} has no value on this licence)");
    }
    println!(
        "use recorded in block {} of chain {} (tx {}) before the keys were released",
        released.use_height, r.chain, r.tx_id
    );
    Ok(ExitCode::SUCCESS)
}

/// A field value as text: UTF-8 as is, anything else as hex.
fn printable(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| format!("0x{}", hex::encode(e.into_bytes())))
}

fn traces(api: &Api, a: HolderArgs) -> anyhow::Result<ExitCode> {
    let holder = keyfile::load(&a.holder_key)?;
    let t = api.rest.holder_traces(&holder)?;
    if api.print_json(&t)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} recorded use(s) of the licences of holder {}", t.traces.len(), t.holder);
    let rows = t
        .traces
        .iter()
        .map(|t| {
            vec![utc(t.time), t.chain.to_string(), t.grantee.clone(), t.item.clone(), t.fields.join(","), t.tx.clone()]
        })
        .collect();
    print_table(&["TIME (UTC)", "CHAIN", "GRANTEE", "ITEM", "FIELDS", "TX"], rows);
    Ok(ExitCode::SUCCESS)
}

fn licences(api: &Api, a: HolderArgs) -> anyhow::Result<ExitCode> {
    let holder = keyfile::load(&a.holder_key)?;
    let l = api.rest.holder_licences(&holder)?;
    if api.print_json(&l)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} licence(s) of holder {}", l.licences.len(), l.holder);
    let rows = l
        .licences
        .iter()
        .map(|l: &LicenceJson| {
            let status = if l.expired { format!("{} (expired)", l.status) } else { l.status.clone() };
            let to = if l.valid_to == 0 { "-".into() } else { utc(l.valid_to)[..10].to_string() };
            vec![l.licence_type.clone(), l.chain.to_string(), status, to, l.issuer.clone(), l.id.clone()]
        })
        .collect();
    print_table(&["TYPE", "CHAIN", "STATUS", "VALID TO", "ISSUER", "ID"], rows);
    Ok(ExitCode::SUCCESS)
}

fn receipt(api: &Api, a: ReceiptArgs) -> anyhow::Result<ExitCode> {
    let q = a.chain.map_or_else(String::new, |c| format!("?chain={c}"));
    let path = format!("/v1/transactions/{}{q}", a.tx.to_hex());
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let mut p: ProofJson = api.rest.get_json(&path)?;
    // A majority of the chain's replicas; the checkpoint is gathered after the block commits.
    let need = api
        .rest
        .get_json::<Vec<ChainJson>>("/v1/chains")
        .ok()
        .and_then(|cs| cs.into_iter().find(|c| c.id == p.chain))
        .map_or(1, |c| c.replicas.len() / 2 + 1);
    while p.signers.len() < need && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        p = api.rest.get_json(&path)?;
    }
    if p.signers.len() < need {
        eprintln!(
            "warning: the block's checkpoint has {} of the {need} replica signatures a majority needs so far; \
             fetch the receipt again later",
            p.signers.len()
        );
    }
    let text = format!("{}\n", serde_json::to_string_pretty(&p)?);
    match &a.out {
        Some(out) => {
            std::fs::write(out, &text).with_context(|| format!("cannot write {}", out.display()))?;
            if api.json {
                print!("{text}");
            } else {
                println!(
                    "saved the receipt of tx {} (block {} of chain {}, outcome {}, checkpoint signed by nodes {:?}) \
                     to {}",
                    p.tx_id,
                    p.height,
                    p.chain,
                    p.outcome,
                    p.signers,
                    out.display()
                );
            }
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What a valid receipt shows.
struct Verified {
    nodes: Vec<u64>,
    outcome: String,
    header: BlockHeader,
}

fn verify_receipt(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let p: ProofJson = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a receipt from `elchain client receipt`", a.file.display()))?;
    let trusted = match &a.node_certs {
        Some(dir) => Some(replica_keys(dir, a.ca.as_deref())?),
        None => None,
    };
    match check_receipt(&p, a.quorum as usize, trusted.as_deref()) {
        Ok(v) => {
            println!(
                "VALID: tx {} is in block {} of chain {} with outcome {}, checkpoint signed by nodes {:?}",
                p.tx_id, v.header.height, v.header.chain, v.outcome, v.nodes
            );
            if trusted.is_none() {
                println!(
                    "note: the replica keys were taken from the checkpoint itself; pass --node-certs DIR (and --ca) \
                     to check them against the node certificates"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("INVALID: {why}");
            Ok(ExitCode::from(REFUSED))
        }
    }
}

/// Check a receipt with nothing but its own bytes (and, given, the replicas' keys).
fn check_receipt(p: &ProofJson, quorum: usize, trusted: Option<&[(u64, PublicKey)]>) -> Result<Verified, String> {
    let bytes = |what: &str, s: &str| hex::decode(s).map_err(|_| format!("the {what} is not hex"));
    let header = BlockHeader::from_bytes(&bytes("header", &p.header)?)
        .map_err(|e| format!("the block header does not decode: {e}"))?;
    let hash = header.hash();
    if hash.to_hex() != p.header_hash {
        return Err(format!("the block header hashes to {}, not to the receipt's header_hash {}", hash, p.header_hash));
    }
    if header.chain.0 != p.chain || header.height != p.height {
        return Err(format!(
            "the header is block {} of chain {}, the receipt says block {} of chain {}",
            header.height, header.chain, p.height, p.chain
        ));
    }
    let proof = InclusionProof::from_bytes(&bytes("inclusion proof", &p.proof)?)
        .map_err(|e| format!("the inclusion proof does not decode: {e}"))?;
    if proof.tx_id.to_hex() != p.tx_id {
        return Err(format!("the inclusion proof is for tx {}, not {}", proof.tx_id, p.tx_id));
    }
    let outcome = match proof.outcome {
        Outcome::Valid => "valid".to_string(),
        Outcome::Invalid(code) => code.as_str().to_string(),
    };
    if outcome != p.outcome || proof.index != p.index {
        return Err(format!(
            "the inclusion proof shows outcome {outcome} at position {}, the receipt says {} at {}",
            proof.index, p.outcome, p.index
        ));
    }
    if !proof.verify(&header) {
        return Err(format!(
            "the inclusion proof of tx {} does not lead to the transaction root of block {}",
            p.tx_id, header.height
        ));
    }
    let cp = p.checkpoint.as_deref().ok_or_else(|| {
        "the receipt has no checkpoint: no replica had signed the block yet; fetch the receipt again".to_string()
    })?;
    let cp = Checkpoint::from_bytes(&bytes("checkpoint", cp)?)
        .map_err(|e| format!("the checkpoint does not decode: {e}"))?;
    if cp.chain != header.chain || cp.height != header.height || cp.header_hash != hash {
        return Err(format!(
            "the checkpoint signs block {} of chain {} with hash {}, not this header",
            cp.height, cp.chain, cp.header_hash
        ));
    }
    let mut nodes: Vec<u64> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for s in &cp.signatures {
        if let Some(keys) = trusted {
            if !keys.contains(&(s.node, s.key)) {
                refused.push(format!("node {}: key is not its replica certificate's", s.node));
                continue;
            }
        }
        if !cp.signature_valid(s) {
            refused.push(format!("node {}: signature does not verify", s.node));
            continue;
        }
        if !nodes.contains(&s.node) {
            nodes.push(s.node);
        }
    }
    nodes.sort_unstable();
    if nodes.len() < quorum {
        let why = if refused.is_empty() { String::new() } else { format!(" (refused: {})", refused.join("; ")) };
        return Err(format!(
            "the checkpoint carries valid signatures of {} distinct replica(s) {nodes:?}, {quorum} needed{why}",
            nodes.len()
        ));
    }
    Ok(Verified { nodes, outcome, header })
}

/// (node id, Ed25519 key) of every replica certificate `node-<id>.pem` in `dir`; with `ca`,
/// only certificates that CA signed are accepted.
fn replica_keys(dir: &Path, ca: Option<&Path>) -> anyhow::Result<Vec<(u64, PublicKey)>> {
    // `issued_serial` reads `ca.pem` in a CA directory; a certificate elsewhere is copied to one.
    let mut _copy = None;
    let ca_dir = match ca {
        Some(p) if p.is_dir() => Some(p.to_path_buf()),
        Some(p) if p.file_name().is_some_and(|n| n == elchain_shard::ca::CA_CERT_FILE) => {
            Some(p.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf))
        }
        Some(p) => {
            let tmp = tempfile::tempdir()?;
            std::fs::copy(p, tmp.path().join(elchain_shard::ca::CA_CERT_FILE))
                .with_context(|| format!("cannot read {}", p.display()))?;
            let d = tmp.path().to_path_buf();
            _copy = Some(tmp);
            Some(d)
        }
        None => None,
    };
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(id) = name.strip_prefix("node-").and_then(|n| n.strip_suffix(".pem")) else { continue };
        let Ok(id) = id.parse::<u64>() else { continue };
        let pem = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(ca_dir) = &ca_dir {
            elchain_shard::ca::issued_serial(ca_dir, &pem)
                .with_context(|| format!("{} is not a certificate of the CA", path.display()))?;
        }
        let der = elchain_shard::ca::certificate_der(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        let who = PeerIdentity::from_certificate(&der).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if who.role.as_deref() != Some("replica") {
            continue;
        }
        if who.node_id != Some(id) {
            bail!("{} is the certificate of node {:?}, not node {id}", path.display(), who.node_id);
        }
        let key = who.public_key.ok_or_else(|| anyhow!("{} does not hold an Ed25519 key", path.display()))?;
        keys.push((id, PublicKey(key)));
    }
    if keys.is_empty() {
        bail!("no replica certificate (node-<id>.pem) in {}", dir.display());
    }
    Ok(keys)
}

fn print_receipt(r: &ReceiptJson) {
    println!("chain:   {}", r.chain);
    println!("block:   {}", r.height.map_or_else(|| "-".into(), |h| h.to_string()));
    println!("tx:      {}", r.tx_id);
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn tx_context(chain: u32) -> TxContext {
    TxContext { chain: ChainId(chain), nonce: OsRng.next_u64(), valid_until: Timestamp(now_ms() + TX_LIFETIME_MS) }
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| format!("expected 64 hex digits, got `{s}`"))?;
    Ok(out)
}

fn parse_licence(s: &str) -> Result<LicenceId, String> {
    hex32(s).map(LicenceId)
}

fn parse_grant(s: &str) -> Result<GrantId, String> {
    hex32(s).map(GrantId)
}

fn parse_tx(s: &str) -> Result<TxId, String> {
    hex32(s).map(TxId)
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}
