//! Errors as `application/problem+json` (RFC 9457) with a stable machine-readable `code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use elchain_types::reason::RejectCode;

/// An error answer. `code` is stable and meant for programs; `detail` is for people.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// Stable snake_case code (the ledger's reject codes keep their names).
    pub code: String,
    /// What happened in this case, and what to do.
    pub detail: String,
    /// True when sending the same request again may succeed (a transaction commits at most once,
    /// so resending the same signed bytes is always safe).
    pub retryable: bool,
    /// The transaction concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<String>,
    /// The receipt, when the transaction reached a block but did not take effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
    /// Seconds to wait before retrying (rate limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status`, stable `code`, and `detail`.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            code: code.to_string(),
            detail: detail.into(),
            retryable: status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS,
            tx_id: None,
            receipt: None,
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 404 with `code`.
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    /// 503: the chain did not answer in time; retrying is safe.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable", detail)
    }

    /// Name the transaction concerned.
    pub fn with_tx(mut self, tx_id: impl Into<String>) -> Self {
        self.tx_id = Some(tx_id.into());
        self
    }

    /// A rejected transaction, with the HTTP status its reject code maps to.
    pub fn rejected(code: RejectCode, detail: impl Into<String>) -> Self {
        Self::new(reject_status(code), code.as_str(), detail)
    }
}

/// The HTTP status for a transaction refused with `code`: 400 undecodable, 413 too large,
/// 403 not allowed (signatures, roles, a grant or licence that no longer allows the use), 404
/// something named does not exist, 409 already done, 422 any other rule of the contract.
pub fn reject_status(code: RejectCode) -> StatusCode {
    use RejectCode as R;
    match code {
        R::Malformed => StatusCode::BAD_REQUEST,
        R::Oversized => StatusCode::PAYLOAD_TOO_LARGE,
        R::Unsigned
        | R::BadSignature
        | R::WrongIssuer
        | R::EndorsementMissing
        | R::NotHolder
        | R::NotGrantee
        | R::FieldNotGranted
        | R::FieldNotAllowed
        | R::LicenceSuspended
        | R::LicenceRevoked
        | R::LicenceExpired
        | R::GrantRevoked
        | R::GrantExpired
        | R::GrantExhausted => StatusCode::FORBIDDEN,
        R::UnknownLicenceType | R::UnknownLicence | R::UnknownItem | R::UnknownMember | R::UnknownGrant => {
            StatusCode::NOT_FOUND
        }
        R::Replay | R::LicenceExists | R::AttestationExists => StatusCode::CONFLICT,
        other if other.as_str() == "admin_quorum" => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let mut resp = (status, axum::Json(self)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
