//! A blocking client of the REST API, for command-line tools, department systems and tests.
//!
//! It speaks JSON over HTTP only; transactions are built and signed by the caller (see
//! `elchain_types::client`), so keys never leave the caller's process.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use elchain_types::codec::Encode;
use elchain_types::crypto::{FieldKeys, Keypair, SealedField};
use elchain_types::ids::LicenceId;
use elchain_types::release::holder_query_message;
use elchain_types::tx::SignedTx;

use crate::json::{
    BatchResponse, ChallengeJson, HolderLicencesJson, LicenceJson, PlacementJson, ReceiptJson, ReleaseJson,
    ServiceKeyJson, TracesJson,
};

/// A problem answer as a client reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProblemJson {
    /// HTTP status.
    pub status: u16,
    /// Stable code.
    pub code: String,
    /// Human message.
    pub detail: String,
    /// Safe to retry.
    #[serde(default)]
    pub retryable: bool,
    /// The transaction concerned.
    #[serde(default)]
    pub tx_id: Option<String>,
    /// The receipt of a transaction recorded without effect.
    #[serde(default)]
    pub receipt: Option<ReceiptJson>,
}

/// Why a call did not give the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// No HTTP answer (connection refused, timeout).
    #[error("no answer from the router: {0}")]
    Transport(String),
    /// An error answer.
    #[error("{} {}: {}", .0.status, .0.code, .0.detail)]
    Problem(Box<ProblemJson>),
    /// An answer that is not what the API promises.
    #[error("unexpected answer ({status}): {message}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// What went wrong.
        message: String,
    },
}

impl RestError {
    /// The problem code, if the router answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RestError::Problem(p) => Some(&p.code),
            _ => None,
        }
    }
}

/// A raw HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `content-type`.
    pub content_type: String,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// The body as `T` when the status is 2xx, else the problem it carries.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, RestError> {
        if (200..300).contains(&self.status) {
            serde_json::from_str(&self.body)
                .map_err(|e| RestError::Unexpected { status: self.status, message: format!("{e}: {}", self.body) })
        } else {
            match serde_json::from_str::<ProblemJson>(&self.body) {
                Ok(p) => Err(RestError::Problem(Box::new(p))),
                Err(_) => Err(RestError::Unexpected { status: self.status, message: self.body.clone() }),
            }
        }
    }
}

/// A client of one router.
#[derive(Clone)]
pub struct RestClient {
    base: String,
    agent: ureq::Agent,
}

impl RestClient {
    /// A client of the router at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into();
        Self { base: base.trim_end_matches('/').to_string(), agent }
    }

    /// The router's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Answer, RestError> {
        let mut r = r.map_err(|e| RestError::Transport(e.to_string()))?;
        let status = r.status().as_u16();
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = r.body_mut().read_to_string().map_err(|e| RestError::Transport(e.to_string()))?;
        Ok(Answer { status, content_type, body })
    }

    /// GET `path` with extra headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<Answer, RestError> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.call())
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Result<Answer, RestError> {
        self.get_with(path, &[])
    }

    /// POST a body (sent as `application/json`) to `path`.
    pub fn post(&self, path: &str, body: &str) -> Result<Answer, RestError> {
        let req = self.agent.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        Self::answer(req.send(body))
    }

    /// GET `path` as `T`.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RestError> {
        self.get(path)?.json()
    }

    /// Submit one signed transaction; with `wait`, the receipt of its commit.
    pub fn submit(&self, tx: &SignedTx, wait: bool) -> Result<ReceiptJson, RestError> {
        let body = serde_json::json!({ "tx": hex::encode(tx.to_bytes()), "wait": wait });
        self.post("/v1/transactions", &body.to_string())?.json()
    }

    /// Submit signed transactions in one batch.
    pub fn submit_batch(&self, txs: &[SignedTx], wait: bool) -> Result<Vec<ReceiptJson>, RestError> {
        let hexes: Vec<String> = txs.iter().map(|t| hex::encode(t.to_bytes())).collect();
        let body = serde_json::json!({ "txs": hexes, "wait": wait });
        Ok(self.post("/v1/transactions/batch", &body.to_string())?.json::<BatchResponse>()?.receipts)
    }

    /// Where a new licence of `licence_type` for `holder` goes.
    pub fn placement(
        &self,
        licence_type: &str,
        holder: &elchain_types::ids::HolderId,
    ) -> Result<PlacementJson, RestError> {
        self.get_json(&format!("/v1/placement?licence_type={licence_type}&holder={}", holder.to_hex()))
    }

    /// A licence record.
    pub fn licence(&self, id: &LicenceId) -> Result<LicenceJson, RestError> {
        self.get_json(&format!("/v1/licences/{}", id.to_hex()))
    }

    /// The authorisation service's X25519 key.
    pub fn service_key(&self) -> Result<[u8; 32], RestError> {
        let k: ServiceKeyJson = self.get_json("/v1/authorisation/key")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&k.encryption_key, &mut out)
            .map_err(|e| RestError::Unexpected { status: 200, message: format!("service key: {e}") })?;
        Ok(out)
    }

    /// The headers proving `holder` asks: a fresh challenge signed with the holder's key.
    pub fn holder_headers(&self, holder: &Keypair) -> Result<Vec<(String, String)>, RestError> {
        let c: ChallengeJson = self.get_json("/v1/challenge")?;
        let challenge = hex::decode(&c.challenge)
            .map_err(|e| RestError::Unexpected { status: 200, message: format!("challenge: {e}") })?;
        let sig = holder.sign(&holder_query_message(&challenge, &holder.holder_id()));
        Ok(vec![
            ("x-elchain-holder-key".into(), holder.public().to_hex()),
            ("x-elchain-challenge".into(), c.challenge),
            ("x-elchain-signature".into(), hex::encode(sig)),
        ])
    }

    fn holder_get<T: DeserializeOwned>(&self, holder: &Keypair, what: &str) -> Result<T, RestError> {
        let h = self.holder_headers(holder)?;
        let headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.get_with(&format!("/v1/holders/{}/{what}", holder.holder_id().to_hex()), &headers)?.json()
    }

    /// The holder's traces on every chain (signed with the holder's key).
    pub fn holder_traces(&self, holder: &Keypair) -> Result<TracesJson, RestError> {
        self.holder_get(holder, "traces")
    }

    /// The holder's licences on every chain (signed with the holder's key).
    pub fn holder_licences(&self, holder: &Keypair) -> Result<HolderLicencesJson, RestError> {
        self.holder_get(holder, "licences")
    }

    /// Ask the authorisation service for the field keys of a committed use.
    pub fn release(&self, chain: u32, use_tx: &str) -> Result<ReleaseJson, RestError> {
        let body = serde_json::json!({ "chain": chain, "use_tx": use_tx });
        self.post("/v1/release", &body.to_string())?.json()
    }
}

/// Decrypt the fields of `licence` that `keys` open, and check each against its commitment:
/// (field name, value) pairs.
pub fn open_fields(licence: &LicenceJson, keys: &FieldKeys) -> Result<Vec<(String, Vec<u8>)>, String> {
    let id = LicenceId::from_hex(&licence.id).map_err(|e| format!("licence id: {e}"))?;
    let mut out = Vec::new();
    for f in &licence.fields {
        let Some(key) = keys.get(f.index) else { continue };
        let mut commitment = [0u8; 32];
        hex::decode_to_slice(&f.commitment, &mut commitment).map_err(|e| format!("commitment: {e}"))?;
        let ciphertext = hex::decode(&f.ciphertext).map_err(|e| format!("ciphertext: {e}"))?;
        let sealed = SealedField { index: f.index, commitment, ciphertext };
        let d = sealed.open(&id, key).map_err(|e| format!("field {}: {e}", f.name))?;
        if !d.matches(&id, &commitment) {
            return Err(format!("field {} does not match its commitment", f.name));
        }
        out.push((f.name.clone(), d.value));
    }
    Ok(out)
}

/// Wait for the router to answer `/healthz` with 200, polling until `deadline`.
pub fn wait_healthy(client: &RestClient, deadline: Duration) -> Result<(), RestError> {
    let start = std::time::Instant::now();
    loop {
        match client.get("/healthz") {
            Ok(a) if a.status == 200 => return Ok(()),
            Ok(a) if start.elapsed() >= deadline => {
                return Err(RestError::Unexpected { status: a.status, message: a.body })
            }
            Err(e) if start.elapsed() >= deadline => return Err(e),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
