//! The REST API under `/v1`, with its OpenAPI document generated from these handlers.
//!
//! Every route is registered through `utoipa_axum`, which records the handler's `#[utoipa::path]`
//! description in the same call that routes it: the document served at `/openapi.json` cannot
//! list a route the router does not serve, or miss one it does.

// Handlers return `Result<_, Problem>`: the error is the HTTP answer itself, built once per failed
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use elchain_shard::node::client::{Client, ClientError};
use elchain_shard::node::rpc::Response as RpcResponse;
use elchain_shard::node::rpc::{Answer, ProvenReceipt, Query as ChainQuery, Receipt, ReceiptStatus, Request as Rpc};
use elchain_shard::state::{GrantRecord, LicenceRecord, TraceRecord};
use elchain_types::block::{Block, BlockHeader, Checkpoint, InclusionProof};
use elchain_types::codec::Decode;
use elchain_types::contract::{Consortium, LicenceType};
use elchain_types::crypto::{Keypair, PublicKey};
use elchain_types::ids::{GrantId, HolderId, LicenceId, TxId};
use elchain_types::reason::{Outcome, RejectCode};
use elchain_types::release::{holder_query_message, open_for_release};
use elchain_types::tx::{Payload, SignedTx};

use crate::config::Limits;
use crate::directory::{Directory, View, META};
use crate::guard::{Challenges, RateLimiter};
use crate::json::*;
use crate::problem::Problem;

/// Everything a request handler needs.
pub struct App {
    /// QUIC client to every chain's replicas.
    pub client: Client,
    /// The meta-chain view.
    pub directory: Directory,
    /// The authorisation service's key.
    pub service: Keypair,
    /// Request limits.
    pub limits: Limits,
    /// Per client address.
    pub clients: RateLimiter<IpAddr>,
    /// Per transaction signer.
    pub signers: RateLimiter<[u8; 32]>,
    /// Holder challenges.
    pub challenges: Challenges,
    /// How long to wait for a chain.
    pub timeout: Duration,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

/// Router counters.
#[derive(Default)]
pub struct Metrics {
    requests: AtomicU64,
    problems_4xx: AtomicU64,
    problems_5xx: AtomicU64,
    rate_limited: AtomicU64,
    txs_submitted: AtomicU64,
    txs_committed: AtomicU64,
    releases: AtomicU64,
}

type Shared = State<Arc<App>>;
type ApiResult<T> = Result<T, Problem>;

/// The OpenAPI document's header; paths and schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "elchain router",
        description = "Permissioned multi-chain ledger for government electronic licences. Transactions are \
                       built and signed by clients (`elchain client`, or any implementation of the canonical \
                       encoding); the router places them on their chain, follows leaders, and answers with \
                       receipts. Errors are application/problem+json with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "transactions", description = "Submit signed transactions and get receipts with proofs"),
        (name = "records", description = "Licences, grants, and a holder's own data (holder-signed)"),
        (name = "consortium", description = "Members, contracts, items, chains and the shard map"),
        (name = "authorisation", description = "Field keys released only against a committed use (trace before access)"),
        (name = "operations", description = "Health and metrics")
    )
)]
struct ApiDoc;

/// Every documented route.
fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(submit))
        .routes(routes!(submit_batch))
        .routes(routes!(proof))
        .routes(routes!(licence))
        .routes(routes!(grant))
        .routes(routes!(challenge))
        .routes(routes!(holder_licences))
        .routes(routes!(holder_traces))
        .routes(routes!(block))
        .routes(routes!(chains))
        .routes(routes!(shard_map))
        .routes(routes!(placement))
        .routes(routes!(consortium))
        .routes(routes!(members))
        .routes(routes!(contracts))
        .routes(routes!(items))
        .routes(routes!(service_key))
        .routes(routes!(release))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}

/// The OpenAPI 3 document of the API, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The HTTP service: the `/v1` API, `/healthz`, `/metrics` and `/openapi.json`.
pub fn router(app: Arc<App>) -> axum::Router {
    let (api, doc) = routes().split_for_parts();
    let doc = Arc::new(doc.to_pretty_json().expect("the OpenAPI document serializes"));
    api.route("/openapi.json", axum::routing::get(move || serve_openapi(doc.clone())))
        .fallback(|| async { Problem::not_found("no_such_route", "no such route; see /openapi.json") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(app.limits.max_body_bytes))
        .with_state(app)
}

async fn serve_openapi(doc: Arc<String>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], (*doc).clone()).into_response()
}

/// Count requests and apply the per-client rate limit.
async fn guard(State(app): Shared, req: Request, next: Next) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path();
    if path.starts_with("/v1/") {
        let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        if let Err(wait) = app.clients.take(&ip, 1) {
            app.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {} requests per second from {ip}", app.limits.requests_per_second),
            );
            p.retry_after = Some(wait);
            return p.into_response();
        }
    }
    let resp = next.run(req).await;
    let s = resp.status();
    if s.is_client_error() {
        app.metrics.problems_4xx.fetch_add(1, Ordering::Relaxed);
    } else if s.is_server_error() {
        app.metrics.problems_5xx.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

/// A JSON request body whose failures are problem responses: 413 when too large, 400
/// `malformed_json` when not JSON, 400 `invalid_request` when JSON of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the request body is larger than allowed")
            } else {
                Problem::bad_request("unreadable_body", e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => Problem::bad_request("invalid_request", format!("the JSON does not fit: {e}")),
                _ => Problem::bad_request("malformed_json", format!("the body is not JSON: {e}")),
            }
        })
    }
}

fn view(app: &App) -> ApiResult<Arc<View>> {
    app.directory.view().ok_or_else(|| Problem::unavailable("the router has not read the meta chain yet"))
}

fn hex32(what: &str, s: &str) -> ApiResult<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| Problem::bad_request("invalid_id", format!("{what} must be 64 hex digits, got `{s}`")))?;
    Ok(out)
}

fn chain_error(e: ClientError) -> Problem {
    match e {
        ClientError::Deadline { last, .. } => {
            Problem::unavailable(format!("no answer from the chain in time ({last})"))
        }
        ClientError::Refused { message, .. } => Problem::new(StatusCode::BAD_GATEWAY, "chain_error", message),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn receipt_json(chain: u32, r: &Receipt) -> ReceiptJson {
    match r.status {
        ReceiptStatus::Committed { height, index, outcome } => ReceiptJson {
            tx_id: hex::encode(r.tx_id),
            chain,
            status: "committed".into(),
            outcome: Some(outcome_name(outcome)),
            height: Some(height),
            index: Some(index),
        },
        ReceiptStatus::Rejected { code } => ReceiptJson {
            tx_id: hex::encode(r.tx_id),
            chain,
            status: "rejected".into(),
            outcome: Some(outcome_name(code)),
            height: None,
            index: None,
        },
    }
}

fn field_names(ty: Option<&LicenceType>, mask: u64) -> Vec<String> {
    (0..64u16)
        .filter(|i| mask >> i & 1 == 1)
        .map(|i| ty.and_then(|t| t.fields.get(i as usize)).map_or_else(|| format!("#{i}"), |f| f.name.clone()))
        .collect()
}

fn member_code(c: &Consortium, id: elchain_types::ids::MemberId) -> String {
    c.member(id).map_or_else(|| format!("member-{}", id.0), |m| m.code.clone())
}

/// A decoded transaction ready to be sent, or the problem that stops it.
fn admit(app: &App, view: &View, hex_tx: &str) -> ApiResult<(u32, Vec<u8>, SignedTx)> {
    let raw = hex::decode(hex_tx.trim())
        .map_err(|_| Problem::bad_request("malformed", "the transaction must be hex of its canonical encoding"))?;
    let tx = SignedTx::decode_wire(&raw)
        .map_err(|code| Problem::rejected(code, format!("the transaction does not decode: {}", code.describe())))?;
    let chain = tx.body().chain.0;
    if !view.knows_chain(chain) {
        return Err(Problem::not_found("unknown_chain", format!("chain {chain} is not in the chain directory"))
            .with_tx(tx.id().to_hex()));
    }
    if let (Payload::Issue(p), Some(map)) = (&tx.body().payload, &view.shard_map) {
        let placed = map.place(p.licence_type, &p.holder);
        if placed.0 != chain {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "misplaced",
                format!(
                    "shard map version {} places this holder's licences of type {} on chain {}, not {chain}; \
                     ask /v1/placement and build the licence id for that chain",
                    map.version, p.licence_type, placed.0
                ),
            )
            .with_tx(tx.id().to_hex()));
        }
    }
    if let Some(first) = tx.signatures().first() {
        if let Err(wait) = app.signers.take(&first.key.0, 1) {
            app.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {} transactions per second from one signer", app.limits.txs_per_second_per_signer),
            );
            p.retry_after = Some(wait);
            return Err(p.with_tx(tx.id().to_hex()));
        }
    }
    Ok((chain, raw, tx))
}

/// Submit one signed transaction.
///
/// With `wait` (the default) the answer comes once the transaction is in a block: 200 with the
/// receipt when it took effect, or a problem whose `code` is the ledger's reject code (with the
/// receipt attached) when it did not. Without `wait`, 202 once it is handed to its chain. A 503
/// means no answer came in time: send the same bytes again, a transaction commits at most once.
#[utoipa::path(post, path = "/v1/transactions", tag = "transactions", request_body = SubmitRequest,
    responses(
        (status = 200, description = "Committed and took effect", body = ReceiptJson),
        (status = 202, description = "Handed to its chain (not waited for)", body = ReceiptJson),
        (status = 400, description = "Not JSON, wrong shape, or not a transaction", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused: signatures or rights", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Names an unknown chain, licence, grant, member or item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Replay, an existing licence, or misplaced", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body or transaction too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Breaks another contract rule", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No answer in time; retrying is safe", body = Problem, content_type = "application/problem+json"),
    ))]
async fn submit(State(app): Shared, JsonBody(req): JsonBody<SubmitRequest>) -> ApiResult<Response> {
    let view = view(&app)?;
    let (chain, raw, tx) = admit(&app, &view, &req.tx)?;
    let id = tx.id();
    app.metrics.txs_submitted.fetch_add(1, Ordering::Relaxed);
    if !req.wait {
        let app2 = app.clone();
        tokio::spawn(async move {
            if let Err(e) = app2.client.submit(chain, vec![raw], app2.timeout).await {
                tracing::warn!(tx = %id, error = %e, "unwaited submission got no receipt");
            }
        });
        let r = ReceiptJson {
            tx_id: id.to_hex(),
            chain,
            status: "pending".into(),
            outcome: None,
            height: None,
            index: None,
        };
        return Ok((StatusCode::ACCEPTED, Json(r)).into_response());
    }
    let receipts =
        app.client.submit(chain, vec![raw], app.timeout).await.map_err(|e| chain_error(e).with_tx(id.to_hex()))?;
    let r = receipts.first().ok_or_else(|| Problem::new(StatusCode::BAD_GATEWAY, "chain_error", "no receipt"))?;
    let json = receipt_json(chain, r);
    match r.status {
        ReceiptStatus::Committed { outcome: 0, .. } => {
            app.metrics.txs_committed.fetch_add(1, Ordering::Relaxed);
            Ok(Json(json).into_response())
        }
        ReceiptStatus::Committed { outcome, .. } | ReceiptStatus::Rejected { code: outcome } => {
            let code = RejectCode::from_u16(outcome).unwrap_or(RejectCode::Malformed);
            let where_ = match r.status {
                ReceiptStatus::Committed { height, .. } => {
                    format!("recorded in block {height} of chain {chain} without effect")
                }
                ReceiptStatus::Rejected { .. } => format!("refused by chain {chain} before any block"),
            };
            let mut p = Problem::rejected(code, format!("{} ({where_})", code.describe())).with_tx(id.to_hex());
            p.receipt = serde_json::to_value(&json).ok();
            Err(p)
        }
    }
}

/// Submit up to `max_batch` signed transactions for any chains; one receipt each, in order.
///
/// Undecodable entries get a `rejected` receipt; entries for one chain go to it together.
#[utoipa::path(post, path = "/v1/transactions/batch", tag = "transactions", request_body = BatchRequest,
    responses(
        (status = 200, description = "One receipt per transaction", body = BatchResponse),
        (status = 400, description = "Not JSON, wrong shape, or empty", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large or too many transactions", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = Problem, content_type = "application/problem+json"),
    ))]
async fn submit_batch(State(app): Shared, JsonBody(req): JsonBody<BatchRequest>) -> ApiResult<Json<BatchResponse>> {
    if req.txs.is_empty() {
        return Err(Problem::bad_request("empty_batch", "a batch needs at least one transaction"));
    }
    if req.txs.len() > app.limits.max_batch {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{} transactions; at most {} per batch", req.txs.len(), app.limits.max_batch),
        ));
    }
    let view = view(&app)?;
    let mut receipts: Vec<Option<ReceiptJson>> = vec![None; req.txs.len()];
    let mut by_chain: BTreeMap<u32, Vec<(usize, TxId, Vec<u8>)>> = BTreeMap::new();
    for (i, h) in req.txs.iter().enumerate() {
        match admit(&app, &view, h) {
            Ok((chain, raw, tx)) => by_chain.entry(chain).or_default().push((i, tx.id(), raw)),
            Err(p) => {
                receipts[i] = Some(ReceiptJson {
                    tx_id: p.tx_id.clone().unwrap_or_default(),
                    chain: 0,
                    status: "rejected".into(),
                    outcome: Some(p.code.clone()),
                    height: None,
                    index: None,
                })
            }
        }
    }
    app.metrics.txs_submitted.fetch_add(req.txs.len() as u64, Ordering::Relaxed);
    let sends = by_chain.into_iter().map(|(chain, entries)| {
        let app = app.clone();
        let wait = req.wait;
        async move {
            let raws: Vec<Vec<u8>> = entries.iter().map(|(_, _, r)| r.clone()).collect();
            if !wait {
                let app2 = app.clone();
                tokio::spawn(async move {
                    let _ = app2.client.submit(chain, raws, app2.timeout).await;
                });
                return (chain, entries, None);
            }
            let r = app.client.submit(chain, raws, app.timeout).await;
            (chain, entries, Some(r))
        }
    });
    for (chain, entries, result) in futures_join_all(sends).await {
        for (k, (i, id, _)) in entries.iter().enumerate() {
            let pending = |status: &str| ReceiptJson {
                tx_id: id.to_hex(),
                chain,
                status: status.into(),
                outcome: None,
                height: None,
                index: None,
            };
            receipts[*i] = Some(match &result {
                None => pending("pending"),
                Some(Ok(rs)) => rs.get(k).map_or_else(|| pending("unavailable"), |r| receipt_json(chain, r)),
                Some(Err(_)) => pending("unavailable"),
            });
        }
    }
    let receipts: Vec<ReceiptJson> = receipts.into_iter().map(|r| r.expect("every entry answered")).collect();
    let ok = receipts.iter().filter(|r| r.outcome.as_deref() == Some("valid")).count();
    app.metrics.txs_committed.fetch_add(ok as u64, Ordering::Relaxed);
    Ok(Json(BatchResponse { receipts }))
}

/// Run futures concurrently and collect their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a request task panicked"));
    }
    out
}

/// `chain` query parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChainParam {
    /// The chain, when known; otherwise every chain is asked.
    chain: Option<u32>,
}

async fn query(app: &App, chain: u32, q: ChainQuery) -> ApiResult<Answer> {
    app.client.query(chain, q, app.timeout).await.map_err(chain_error)
}

fn proof_json(chain: u32, tx: &TxId, p: &ProvenReceipt) -> ApiResult<ProofJson> {
    let bad = |what: &str| Problem::new(StatusCode::BAD_GATEWAY, "chain_error", format!("undecodable {what}"));
    let header = BlockHeader::from_bytes(&p.header).map_err(|_| bad("header"))?;
    let proof = InclusionProof::from_bytes(&p.proof).map_err(|_| bad("proof"))?;
    let cp = p.checkpoint.as_deref().map(Checkpoint::from_bytes).transpose().map_err(|_| bad("checkpoint"))?;
    Ok(ProofJson {
        tx_id: tx.to_hex(),
        chain,
        height: p.height,
        index: proof.index,
        outcome: outcome_name(proof.outcome.as_u16()),
        header_hash: header.hash().to_hex(),
        header: hex::encode(&p.header),
        proof: hex::encode(&p.proof),
        checkpoint: p.checkpoint.as_ref().map(hex::encode),
        signers: cp.map(|c| c.signatures.iter().map(|s| s.node).collect()).unwrap_or_default(),
    })
}

/// A transaction's receipt with its inclusion proof, block header and checkpoint, checkable
/// offline (`elchain client verify-receipt`).
#[utoipa::path(get, path = "/v1/transactions/{id}", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id, hex"), ChainParam),
    responses(
        (status = 200, description = "Found", body = ProofJson),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not in any block", body = Problem, content_type = "application/problem+json"),
    ))]
async fn proof(State(app): Shared, Path(id): Path<String>, Query(p): Query<ChainParam>) -> ApiResult<Json<ProofJson>> {
    let tx = TxId(hex32("transaction id", &id)?);
    let view = view(&app)?;
    let chains = match p.chain {
        Some(c) if view.knows_chain(c) => vec![c],
        Some(c) => return Err(Problem::not_found("unknown_chain", format!("chain {c} is not in the chain directory"))),
        None => std::iter::once(META).chain(view.licence_chains()).collect(),
    };
    for chain in chains {
        match app.client.to_leader(Rpc::Receipt { chain, tx_id: tx.0 }, app.timeout).await.map_err(chain_error)? {
            RpcResponse::TxReceipt(Some(p)) => return Ok(Json(proof_json(chain, &tx, &p)?)),
            RpcResponse::TxReceipt(None) => {}
            other => return Err(Problem::new(StatusCode::BAD_GATEWAY, "chain_error", format!("{other:?}"))),
        }
    }
    Err(Problem::not_found("unknown_transaction", format!("transaction {id} is in no block")))
}

fn licence_json(c: &Consortium, id: &LicenceId, r: &LicenceRecord) -> LicenceJson {
    let ty = c.licence_type(r.licence_type);
    LicenceJson {
        id: id.to_hex(),
        chain: id.chain().0,
        licence_type: ty.map_or_else(|| format!("type-{}", r.licence_type.0), |t| t.code.clone()),
        contract_version: r.contract_version,
        holder: r.holder.to_hex(),
        issuer: member_code(c, r.issuer),
        status: r.status.as_str().into(),
        expired: r.expired_at(elchain_types::ids::Timestamp(now_ms())),
        valid_from: r.valid_from.0,
        valid_to: r.valid_to.0,
        issued_at: r.issued_at.0,
        updated_at: r.updated_at.0,
        last_tx: r.last_tx.to_hex(),
        fields: r
            .fields
            .iter()
            .map(|f| SealedFieldJson {
                index: f.index,
                name: field_names(ty, 1 << f.index).pop().unwrap_or_default(),
                commitment: hex::encode(f.commitment),
                ciphertext: hex::encode(&f.ciphertext),
            })
            .collect(),
        holder_envelope: hex::encode(&r.holder_envelope),
    }
}

async fn read_licence(app: &App, id: &LicenceId) -> ApiResult<Option<LicenceRecord>> {
    let view = view(app)?;
    if !view.knows_chain(id.chain().0) || id.chain().0 == META {
        return Ok(None);
    }
    match query(app, id.chain().0, ChainQuery::Licence(id.0)).await? {
        Answer::Record(Some(b)) => Ok(Some(LicenceRecord::from_bytes(&b).map_err(|_| bad_record("licence"))?)),
        _ => Ok(None),
    }
}

fn bad_record(what: &str) -> Problem {
    Problem::new(StatusCode::BAD_GATEWAY, "chain_error", format!("the chain returned an undecodable {what}"))
}

/// A licence: type, holder, issuer, status, validity, and its sealed fields (no plaintext).
#[utoipa::path(get, path = "/v1/licences/{id}", tag = "records",
    params(("id" = String, Path, description = "Licence id, hex")),
    responses(
        (status = 200, description = "Found", body = LicenceJson),
        (status = 400, description = "Bad id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such licence", body = Problem, content_type = "application/problem+json"),
    ))]
async fn licence(State(app): Shared, Path(id): Path<String>) -> ApiResult<Json<LicenceJson>> {
    let lid = LicenceId(hex32("licence id", &id)?);
    let view = view(&app)?;
    let r = read_licence(&app, &lid)
        .await?
        .ok_or_else(|| Problem::not_found("unknown_licence", format!("no licence {id}")))?;
    Ok(Json(licence_json(&view.consortium, &lid, &r)))
}

fn grant_json(c: &Consortium, chain: u32, id: &GrantId, g: &GrantRecord) -> GrantJson {
    let licence = c.licence_type_of(g);
    GrantJson {
        id: id.to_hex(),
        chain,
        licence: g.licence.to_hex(),
        holder: g.holder.to_hex(),
        grantee: member_code(c, g.grantee),
        item: c.item(g.item).map_or_else(|| format!("item-{}", g.item.0), |i| i.code.clone()),
        fields: field_names(licence, g.fields),
        not_before: g.not_before.0,
        not_after: g.not_after.0,
        max_uses: g.max_uses,
        uses: g.uses,
        revoked: g.revoked,
        created_at: g.created_at.0,
        envelope: hex::encode(&g.envelope),
    }
}

/// The licence type a grant's fields belong to: the item's single type when unambiguous.
trait GrantType {
    fn licence_type_of(&self, g: &GrantRecord) -> Option<&LicenceType>;
}

impl GrantType for Consortium {
    fn licence_type_of(&self, g: &GrantRecord) -> Option<&LicenceType> {
        let item = self.item(g.item)?;
        let mut types = item.needs.iter().filter(|(_, m)| g.fields & !m == 0);
        let (t, _) = types.next()?;
        self.licence_type(*t)
    }
}

async fn read_grant(app: &App, id: &GrantId, chains: &[u32]) -> ApiResult<Option<(u32, GrantRecord)>> {
    for &chain in chains {
        if let Answer::Record(Some(b)) = query(app, chain, ChainQuery::Grant(id.0)).await? {
            return Ok(Some((chain, GrantRecord::from_bytes(&b).map_err(|_| bad_record("grant"))?)));
        }
    }
    Ok(None)
}

/// A grant: who may use which fields of which licence, for what, until when, and how often it
/// was used.
#[utoipa::path(get, path = "/v1/grants/{id}", tag = "records",
    params(("id" = String, Path, description = "Grant id (its transaction id), hex"), ChainParam),
    responses(
        (status = 200, description = "Found", body = GrantJson),
        (status = 404, description = "No such grant", body = Problem, content_type = "application/problem+json"),
    ))]
async fn grant(State(app): Shared, Path(id): Path<String>, Query(p): Query<ChainParam>) -> ApiResult<Json<GrantJson>> {
    let gid = GrantId(hex32("grant id", &id)?);
    let view = view(&app)?;
    let chains = p.chain.map_or_else(|| view.licence_chains(), |c| vec![c]);
    let (chain, g) = read_grant(&app, &gid, &chains)
        .await?
        .ok_or_else(|| Problem::not_found("unknown_grant", format!("no grant {id}")))?;
    Ok(Json(grant_json(&view.consortium, chain, &gid, &g)))
}

/// A fresh single-use challenge for a holder to sign before reading their own records.
#[utoipa::path(get, path = "/v1/challenge", tag = "records",
    responses((status = 200, description = "A challenge valid for 60 s", body = ChallengeJson)))]
async fn challenge(State(app): Shared) -> Json<ChallengeJson> {
    let (c, expires_at) = app.challenges.issue();
    Json(ChallengeJson { challenge: hex::encode(c), expires_at })
}

const HOLDER_KEY: &str = "x-elchain-holder-key";
const CHALLENGE: &str = "x-elchain-challenge";
const SIGNATURE: &str = "x-elchain-signature";

/// Check that the request carries the holder's signature over a fresh challenge of this router.
fn holder_proof(app: &App, holder: &HolderId, headers: &HeaderMap) -> ApiResult<()> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let (Some(key), Some(ch), Some(sig)) = (get(HOLDER_KEY), get(CHALLENGE), get(SIGNATURE)) else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "holder_signature_required",
            format!("a holder's records need the headers {HOLDER_KEY}, {CHALLENGE} (from GET /v1/challenge) and {SIGNATURE}"),
        ));
    };
    let forbidden = |code: &str, d: &str| Problem::new(StatusCode::FORBIDDEN, code, d);
    let key = PublicKey(hex32("holder key", key).map_err(|_| forbidden("bad_holder_signature", "bad holder key"))?);
    if key.holder_id() != *holder {
        return Err(forbidden("not_holder", "the key is not this holder's"));
    }
    let ch = hex::decode(ch).map_err(|_| forbidden("unknown_challenge", "the challenge is not hex"))?;
    let mut s = [0u8; 64];
    hex::decode_to_slice(sig, &mut s)
        .map_err(|_| forbidden("bad_holder_signature", "the signature is not 128 hex digits"))?;
    let msg = holder_query_message(&ch, holder);
    let ok = elchain_types::verify::verify_one(elchain_types::verify::SigItem { key: &key, msg: &msg, sig: &s });
    if !ok {
        return Err(forbidden("bad_holder_signature", "the signature does not verify"));
    }
    app.challenges.redeem(&ch).map_err(|e| {
        let code = match e {
            crate::guard::ChallengeError::Unknown => "unknown_challenge",
            crate::guard::ChallengeError::Expired => "challenge_expired",
            crate::guard::ChallengeError::Used => "challenge_used",
        };
        Problem::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    })
}

/// The holder's signature over a fresh challenge.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct HolderHeaders {
    /// The holder's Ed25519 public key, hex (its hash is the holder id).
    #[param(rename = "x-elchain-holder-key")]
    key: String,
    /// A challenge from `GET /v1/challenge`, hex; each is accepted once.
    #[param(rename = "x-elchain-challenge")]
    challenge: String,
    /// Ed25519 signature over `blake3_derive("elchain 2026 holder query v1", challenge ‖ holder id)`, hex.
    #[param(rename = "x-elchain-signature")]
    signature: String,
}

/// A holder's licences on every chain. Needs the holder's signature over a fresh challenge.
#[utoipa::path(get, path = "/v1/holders/{holder}/licences", tag = "records",
    params(("holder" = String, Path, description = "Holder id, hex"), HolderHeaders),
    responses(
        (status = 200, description = "The licences", body = HolderLicencesJson),
        (status = 401, description = "No or stale challenge", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the holder's signature", body = Problem, content_type = "application/problem+json"),
    ))]
async fn holder_licences(
    State(app): Shared,
    Path(holder): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<HolderLicencesJson>> {
    let h = HolderId(hex32("holder id", &holder)?);
    holder_proof(&app, &h, &headers)?;
    let view = view(&app)?;
    let mut licences = Vec::new();
    for chain in view.licence_chains() {
        let Answer::Records(ids) = query(&app, chain, ChainQuery::HolderLicences(h.0)).await? else { continue };
        for id in ids {
            let lid = LicenceId(id.as_slice().try_into().map_err(|_| bad_record("licence id"))?);
            if let Answer::Record(Some(b)) = query(&app, chain, ChainQuery::Licence(lid.0)).await? {
                let r = LicenceRecord::from_bytes(&b).map_err(|_| bad_record("licence"))?;
                licences.push(licence_json(&view.consortium, &lid, &r));
            }
        }
    }
    Ok(Json(HolderLicencesJson { holder, licences }))
}

/// Every recorded use of a holder's licences, on every chain, oldest first. Needs the holder's
/// signature over a fresh challenge.
#[utoipa::path(get, path = "/v1/holders/{holder}/traces", tag = "records",
    params(("holder" = String, Path, description = "Holder id, hex"), HolderHeaders),
    responses(
        (status = 200, description = "The traces", body = TracesJson),
        (status = 401, description = "No or stale challenge", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the holder's signature", body = Problem, content_type = "application/problem+json"),
    ))]
async fn holder_traces(
    State(app): Shared,
    Path(holder): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<TracesJson>> {
    let h = HolderId(hex32("holder id", &holder)?);
    holder_proof(&app, &h, &headers)?;
    let view = view(&app)?;
    let c = &view.consortium;
    let chains = view.licence_chains();
    let mut traces = Vec::new();
    for &chain in &chains {
        let Answer::Records(rs) = query(&app, chain, ChainQuery::HolderTraces(h.0)).await? else { continue };
        for b in rs {
            let t = TraceRecord::from_bytes(&b).map_err(|_| bad_record("trace"))?;
            let item = c.item(t.item);
            let ty = item
                .and_then(|i| i.needs.iter().find(|(_, m)| t.fields & !m == 0))
                .and_then(|(ty, _)| c.licence_type(*ty));
            traces.push(TraceJson {
                chain,
                grant: t.grant.to_hex(),
                licence: t.licence.to_hex(),
                grantee: member_code(c, t.grantee),
                item: item.map_or_else(|| format!("item-{}", t.item.0), |i| i.code.clone()),
                fields: field_names(ty, t.fields),
                time: t.time.0,
                tx: t.tx.to_hex(),
            });
        }
    }
    traces.sort_by(|a, b| (a.time, &a.tx).cmp(&(b.time, &b.tx)));
    Ok(Json(TracesJson { holder, chains, traces }))
}

/// A block: header fields and each transaction's id and outcome.
#[utoipa::path(get, path = "/v1/chains/{chain}/blocks/{height}", tag = "transactions",
    params(("chain" = u32, Path, description = "Chain id"), ("height" = u64, Path, description = "Block height (1 is the first after genesis)")),
    responses(
        (status = 200, description = "Found", body = BlockJson),
        (status = 404, description = "No such chain or block", body = Problem, content_type = "application/problem+json"),
    ))]
async fn block(State(app): Shared, Path((chain, height)): Path<(String, String)>) -> ApiResult<Json<BlockJson>> {
    let chain: u32 = chain.parse().map_err(|_| Problem::bad_request("invalid_id", "chain must be a number"))?;
    let height: u64 = height.parse().map_err(|_| Problem::bad_request("invalid_id", "height must be a number"))?;
    if !view(&app)?.knows_chain(chain) {
        return Err(Problem::not_found("unknown_chain", format!("chain {chain} is not in the chain directory")));
    }
    let bytes = match app.client.to_leader(Rpc::Block { chain, height }, app.timeout).await.map_err(chain_error)? {
        RpcResponse::Block(Some(b)) => b,
        RpcResponse::Block(None) => {
            return Err(Problem::not_found("unknown_block", format!("chain {chain} has no block {height}")))
        }
        other => return Err(Problem::new(StatusCode::BAD_GATEWAY, "chain_error", format!("{other:?}"))),
    };
    let b = Block::from_bytes(&bytes).map_err(|_| bad_record("block"))?;
    Ok(Json(BlockJson::from_block(chain, &b)))
}

/// The chain directory, with each chain's leader and height.
#[utoipa::path(get, path = "/v1/chains", tag = "consortium",
    responses((status = 200, description = "Chains", body = Vec<ChainJson>)))]
async fn chains(State(app): Shared) -> ApiResult<Json<Vec<ChainJson>>> {
    let view = view(&app)?;
    let mut out = Vec::new();
    for c in &view.chains {
        let status = match app.client.to_leader(Rpc::Status { chain: c.id.0 }, Duration::from_secs(2)).await {
            Ok(RpcResponse::Status(s)) => Some(s),
            _ => None,
        };
        out.push(ChainJson {
            id: c.id.0,
            replicas: c.replicas.iter().map(|r| ReplicaJson { node: r.node, addr: r.addr.clone() }).collect(),
            leader: status.as_ref().and_then(|s| s.leader),
            height: status.map(|s| s.height),
        });
    }
    Ok(Json(out))
}

/// The current shard map: which chain new licences go to.
#[utoipa::path(get, path = "/v1/shard-map", tag = "consortium",
    responses(
        (status = 200, description = "The map", body = ShardMapJson),
        (status = 404, description = "No shard map set yet", body = Problem, content_type = "application/problem+json"),
    ))]
async fn shard_map(State(app): Shared) -> ApiResult<Json<ShardMapJson>> {
    let view = view(&app)?;
    let map = view.shard_map.as_ref().ok_or_else(|| Problem::not_found("no_shard_map", "no shard map is set yet"))?;
    Ok(Json(ShardMapJson {
        version: map.version,
        buckets: map.buckets,
        rules: map
            .rules
            .iter()
            .map(|r| RuleJson {
                licence_type: r.licence_type.map(|t| {
                    view.consortium.licence_type(t).map_or_else(|| format!("type-{}", t.0), |ty| ty.code.clone())
                }),
                from: r.buckets.start,
                to: r.buckets.end,
                chain: r.chain.0,
            })
            .collect(),
    }))
}

/// `licence_type` and `holder` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PlacementParams {
    /// Licence type code.
    licence_type: String,
    /// Holder id, hex.
    holder: String,
}

/// The chain a new licence of this type for this holder goes to.
#[utoipa::path(get, path = "/v1/placement", tag = "consortium", params(PlacementParams),
    responses(
        (status = 200, description = "Its chain", body = PlacementJson),
        (status = 404, description = "Unknown licence type or no shard map", body = Problem, content_type = "application/problem+json"),
    ))]
async fn placement(State(app): Shared, Query(p): Query<PlacementParams>) -> ApiResult<Json<PlacementJson>> {
    let holder = HolderId(hex32("holder id", &p.holder)?);
    let view = view(&app)?;
    let ty = view
        .consortium
        .licence_type_by_code(&p.licence_type)
        .ok_or_else(|| Problem::not_found("unknown_licence_type", format!("no licence type `{}`", p.licence_type)))?;
    let map = view.shard_map.as_ref().ok_or_else(|| Problem::not_found("no_shard_map", "no shard map is set yet"))?;
    Ok(Json(PlacementJson {
        chain: map.place(ty.id, &holder).0,
        bucket: elchain_types::shardmap::bucket(&holder, map.buckets),
        shard_map_version: map.version,
    }))
}

/// The consortium in brief: name, governance threshold and admins, sizes.
#[utoipa::path(get, path = "/v1/consortium", tag = "consortium",
    responses((status = 200, description = "The consortium", body = ConsortiumJson)))]
async fn consortium(State(app): Shared) -> ApiResult<Json<ConsortiumJson>> {
    let view = view(&app)?;
    let c = &view.consortium;
    Ok(Json(ConsortiumJson {
        name: c.name.clone(),
        admin_k: c.admin_k,
        admins: c.admins().map(|m| m.code.clone()).collect(),
        members: c.members.len(),
        licence_types: c.licence_types.len(),
        items: c.items.len(),
        meta_height: view.height,
    }))
}

/// Consortium members and their keys.
#[utoipa::path(get, path = "/v1/members", tag = "consortium",
    responses((status = 200, description = "Members", body = Vec<MemberJson>)))]
async fn members(State(app): Shared) -> ApiResult<Json<Vec<MemberJson>>> {
    let view = view(&app)?;
    Ok(Json(
        view.consortium
            .members
            .iter()
            .map(|m| MemberJson {
                id: m.id.0,
                code: m.code.clone(),
                name: m.name.clone(),
                kind: match m.kind {
                    elchain_types::contract::MemberKind::CityBureau => "city_bureau".into(),
                    elchain_types::contract::MemberKind::District => "district".into(),
                },
                admin: m.admin,
                signing_key: m.signing_key.to_hex(),
                encryption_key: hex::encode(m.encryption_key),
            })
            .collect(),
    ))
}

/// Licence-type contracts: field schemas, issuers, endorsement policy, validity.
#[utoipa::path(get, path = "/v1/contracts", tag = "consortium",
    responses((status = 200, description = "Contracts", body = Vec<ContractJson>)))]
async fn contracts(State(app): Shared) -> ApiResult<Json<Vec<ContractJson>>> {
    use elchain_types::contract::{FieldKind, HolderKind};
    let view = view(&app)?;
    let c = &view.consortium;
    let codes = |ids: &[elchain_types::ids::MemberId]| ids.iter().map(|m| member_code(c, *m)).collect();
    Ok(Json(
        c.licence_types
            .iter()
            .map(|t| ContractJson {
                id: t.id.0,
                code: t.code.clone(),
                name: t.name.clone(),
                version: t.version,
                holder: match t.holder {
                    HolderKind::Person => "person".into(),
                    HolderKind::Enterprise => "enterprise".into(),
                },
                issuers: codes(&t.issuers),
                endorse_k: t.endorse_k,
                endorsers: codes(&t.endorsers),
                max_validity_days: t.max_validity_days,
                renewable: t.renewable,
                fields: t
                    .fields
                    .iter()
                    .map(|f| FieldJson {
                        name: f.name.clone(),
                        kind: match f.kind {
                            FieldKind::Text => "text",
                            FieldKind::Date => "date",
                            FieldKind::Integer => "integer",
                            FieldKind::Digest => "digest",
                        }
                        .into(),
                        required: f.required,
                    })
                    .collect(),
            })
            .collect(),
    ))
}

/// Service items and the licence fields each may ask for.
#[utoipa::path(get, path = "/v1/items", tag = "consortium",
    responses((status = 200, description = "Items", body = Vec<ItemJson>)))]
async fn items(State(app): Shared) -> ApiResult<Json<Vec<ItemJson>>> {
    let view = view(&app)?;
    let c = &view.consortium;
    Ok(Json(
        c.items
            .iter()
            .map(|i| ItemJson {
                id: i.id.0,
                code: i.code.clone(),
                name: i.name.clone(),
                kind: match i.kind {
                    elchain_types::contract::ItemKind::Enterprise => "enterprise".into(),
                    elchain_types::contract::ItemKind::Personal => "personal".into(),
                },
                needs: i
                    .needs
                    .iter()
                    .map(|(t, m)| {
                        let ty = c.licence_type(*t);
                        NeedJson {
                            licence_type: ty.map_or_else(|| format!("type-{}", t.0), |ty| ty.code.clone()),
                            fields: field_names(ty, *m),
                        }
                    })
                    .collect(),
            })
            .collect(),
    ))
}

/// The authorisation service's public key: holders seal grant envelopes to it (two layers; see
/// `POST /v1/release`).
#[utoipa::path(get, path = "/v1/authorisation/key", tag = "authorisation",
    responses((status = 200, description = "The key", body = ServiceKeyJson)))]
async fn service_key(State(app): Shared) -> Json<ServiceKeyJson> {
    Json(ServiceKeyJson { encryption_key: hex::encode(app.service.encryption_public()) })
}

/// Release a grant's field keys against a committed use.
///
/// The service finds the use transaction in its chain, checks that it took effect, opens the
/// grant's outer envelope and answers with the inner one, sealed to the grantee: without a
/// recorded use, no department gets a field key.
#[utoipa::path(post, path = "/v1/release", tag = "authorisation", request_body = ReleaseRequest,
    responses(
        (status = 200, description = "Keys sealed to the grantee", body = ReleaseJson),
        (status = 403, description = "The use did not take effect, or the envelope is not for this service", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such use transaction or grant", body = Problem, content_type = "application/problem+json"),
    ))]
async fn release(State(app): Shared, JsonBody(req): JsonBody<ReleaseRequest>) -> ApiResult<Json<ReleaseJson>> {
    let tx = TxId(hex32("use_tx", &req.use_tx)?);
    let view = view(&app)?;
    if req.chain == META || !view.knows_chain(req.chain) {
        return Err(Problem::not_found("unknown_chain", format!("chain {} holds no grants", req.chain)));
    }
    let found = match app.client.to_leader(Rpc::Receipt { chain: req.chain, tx_id: tx.0 }, app.timeout).await {
        Ok(RpcResponse::TxReceipt(r)) => r,
        Ok(other) => return Err(Problem::new(StatusCode::BAD_GATEWAY, "chain_error", format!("{other:?}"))),
        Err(e) => return Err(chain_error(e)),
    };
    let p = found.ok_or_else(|| {
        Problem::not_found(
            "unknown_transaction",
            format!("no committed transaction {} on chain {}", req.use_tx, req.chain),
        )
    })?;
    let proof = InclusionProof::from_bytes(&p.proof).map_err(|_| bad_record("proof"))?;
    if proof.outcome != Outcome::Valid {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "use_not_effective",
            format!(
                "the use transaction was recorded as {}: nothing is released",
                outcome_name(proof.outcome.as_u16())
            ),
        ));
    }
    let block = match app.client.to_leader(Rpc::Block { chain: req.chain, height: p.height }, app.timeout).await {
        Ok(RpcResponse::Block(Some(b))) => Block::from_bytes(&b).map_err(|_| bad_record("block"))?,
        Ok(_) => return Err(Problem::unavailable("the use's block is not available yet")),
        Err(e) => return Err(chain_error(e)),
    };
    let raw = block.txs.get(proof.index as usize).ok_or_else(|| bad_record("block"))?;
    let use_tx = SignedTx::decode_wire(raw).map_err(|_| bad_record("transaction"))?;
    let Payload::Use(u) = &use_tx.body().payload else {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "not_a_use", "the transaction is not a use"));
    };
    let (_, g) = read_grant(&app, &u.grant, &[req.chain])
        .await?
        .ok_or_else(|| Problem::not_found("unknown_grant", "the use names a grant this chain does not hold"))?;
    let inner = open_for_release(&app.service, &g.envelope, &g.licence, g.grantee, g.fields).map_err(|e| {
        Problem::new(StatusCode::FORBIDDEN, "not_releasable", format!("{e}; the holder sealed the keys elsewhere"))
    })?;
    app.metrics.releases.fetch_add(1, Ordering::Relaxed);
    tracing::info!(chain = req.chain, grant = %u.grant, use_tx = %tx, grantee = g.grantee.0, "released field keys");
    let ty = view.consortium.licence_type_of(&g);
    Ok(Json(ReleaseJson {
        grant: u.grant.to_hex(),
        licence: g.licence.to_hex(),
        grantee: member_code(&view.consortium, g.grantee),
        fields: field_names(ty, g.fields),
        use_tx: tx.to_hex(),
        use_height: p.height,
        sealed_keys: hex::encode(inner),
    }))
}

/// Router health: `ok` while the meta chain was read recently.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Serving", body = HealthJson),
        (status = 503, description = "The meta chain has not been read recently", body = HealthJson),
    ))]
async fn healthz(State(app): Shared) -> Response {
    let Some(v) = app.directory.view() else {
        let h = HealthJson {
            status: "starting".into(),
            meta_height: 0,
            meta_age_ms: 0,
            shard_map_version: 0,
            chains: vec![],
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(h)).into_response();
    };
    let age = v.read_at.elapsed();
    let fresh = age < app.timeout.max(Duration::from_secs(10));
    let h = HealthJson {
        status: if fresh { "ok" } else { "degraded" }.into(),
        meta_height: v.height,
        meta_age_ms: age.as_millis() as u64,
        shard_map_version: v.shard_map.as_ref().map_or(0, |m| m.version),
        chains: v.licence_chains(),
    };
    (if fresh { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(h)).into_response()
}

/// Prometheus metrics of this router.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(app): Shared) -> Response {
    let m = &app.metrics;
    let v = app.directory.view();
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP elchain_router_{name} {help}\n# TYPE elchain_router_{name} {kind}\n"));
        out.push_str(&format!("elchain_router_{name} {value}\n"));
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    put("requests_total", "counter", "HTTP requests served.", get(&m.requests));
    put("client_errors_total", "counter", "Answers with a 4xx status.", get(&m.problems_4xx));
    put("server_errors_total", "counter", "Answers with a 5xx status.", get(&m.problems_5xx));
    put("rate_limited_total", "counter", "Requests refused by a rate limit.", get(&m.rate_limited));
    put("txs_submitted_total", "counter", "Transactions passed to chains.", get(&m.txs_submitted));
    put("txs_committed_total", "counter", "Transactions committed with effect.", get(&m.txs_committed));
    put("releases_total", "counter", "Field-key releases against committed uses.", get(&m.releases));
    put("meta_height", "gauge", "Meta-chain height of the cached view.", v.as_ref().map_or(0, |v| v.height));
    put(
        "shard_map_version",
        "gauge",
        "Shard map version in use.",
        v.as_ref().and_then(|v| v.shard_map.as_ref()).map_or(0, |m| m.version),
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
