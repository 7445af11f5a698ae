//! Stable rejection codes.
//!
//! A transaction that a chain refuses carries one of these codes, in its block and in its
//! receipt. The numbers are stored on chain and the names are part of the API: never renumber
//! or rename one, only add.

use std::fmt;

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};

macro_rules! reject_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $num:literal, $name:literal;)*) => {
        /// Why a transaction had no effect.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum RejectCode {
            $($(#[doc = $doc])* $variant = $num,)*
        }

        impl RejectCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [RejectCode] = &[$(RejectCode::$variant,)*];

            /// The stable snake_case name used in APIs and logs.
            pub fn as_str(self) -> &'static str {
                match self { $(RejectCode::$variant => $name,)* }
            }

            /// What the code means, in a sentence (its documentation).
            pub fn describe(self) -> &'static str {
                match self { $(RejectCode::$variant => concat!($($doc),*).trim_ascii(),)* }
            }

            /// The stable number stored on chain.
            pub fn as_u16(self) -> u16 {
                self as u16
            }

            /// The code with this number, if any.
            pub fn from_u16(n: u16) -> Option<Self> {
                match n { $($num => Some(RejectCode::$variant),)* _ => None }
            }

            /// The code with this name, if any.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($name => Some(RejectCode::$variant),)* _ => None }
            }
        }
    };
}

reject_codes! {
    /// The bytes are not a canonical transaction encoding.
    Malformed = 1, "malformed";
    /// The transaction is larger than the protocol allows.
    Oversized = 2, "oversized";
    /// The transaction carries no signature.
    Unsigned = 3, "unsigned";
    /// A signature does not verify, or its key or encoding is not acceptable.
    BadSignature = 4, "bad_signature";
    /// The transaction names another chain.
    WrongChain = 5, "wrong_chain";
    /// `valid_until` has passed.
    Expired = 6, "expired";
    /// `valid_until` is further ahead than the replay window allows.
    WindowTooLong = 7, "window_too_long";
    /// This transaction id was already accepted.
    Replay = 8, "replay";
    /// The signer is not a member allowed to issue or manage this licence type.
    WrongIssuer = 9, "wrong_issuer";
    /// The contract's endorsement policy is not met by the signatures.
    EndorsementMissing = 10, "endorsement_missing";
    /// No contract defines this licence type (or version).
    UnknownLicenceType = 11, "unknown_licence_type";
    /// Fields missing, unknown, duplicated or out of order for the type's schema.
    SchemaViolation = 12, "schema_violation";
    /// A licence with this id already exists.
    LicenceExists = 13, "licence_exists";
    /// The licence id is not the one derived from chain, issuer, type, holder and nonce.
    BadLicenceId = 14, "bad_licence_id";
    /// No licence with this id exists on this chain.
    UnknownLicence = 15, "unknown_licence";
    /// The licence is suspended.
    LicenceSuspended = 16, "licence_suspended";
    /// The licence is revoked.
    LicenceRevoked = 17, "licence_revoked";
    /// The licence's validity period has ended.
    LicenceExpired = 18, "licence_expired";
    /// The licence's status does not allow this operation (e.g. reinstating an active licence).
    InvalidTransition = 19, "invalid_transition";
    /// The validity period is empty or longer than the contract allows.
    BadValidity = 20, "bad_validity";
    /// The contract does not allow renewal.
    NotRenewable = 21, "not_renewable";
    /// The holder's signature is missing.
    NotHolder = 22, "not_holder";
    /// No service item has this id.
    UnknownItem = 23, "unknown_item";
    /// The item may not request these fields of this licence type.
    FieldNotAllowed = 24, "field_not_allowed";
    /// The grant's window is empty, in the past, or too long.
    BadGrantWindow = 25, "bad_grant_window";
    /// No member has this id, or the signer is not a member.
    UnknownMember = 26, "unknown_member";
    /// No grant with this id exists on this chain.
    UnknownGrant = 27, "unknown_grant";
    /// The grant was revoked by the holder.
    GrantRevoked = 28, "grant_revoked";
    /// The time is outside the grant's window.
    GrantExpired = 29, "grant_expired";
    /// The grant's maximum number of uses is reached.
    GrantExhausted = 30, "grant_exhausted";
    /// The signer is not the member the grant was given to.
    NotGrantee = 31, "not_grantee";
    /// The use asks for a field the grant does not cover.
    FieldNotGranted = 32, "field_not_granted";
    /// This document digest is already attested.
    AttestationExists = 33, "attestation_exists";
    /// A governance transaction on a licence chain: only the meta chain (0) takes them.
    MetaChainOnly = 34, "meta_chain_only";
    /// A licence, grant, use or attestation transaction on the meta chain (0).
    NotOnMetaChain = 35, "not_on_meta_chain";
    /// Fewer than the consortium's `admin_k` distinct admin members signed.
    AdminQuorum = 36, "admin_quorum";
    /// A shard-map version that is not the current one plus 1, or a licence-type version not
    /// above the current one.
    StaleVersion = 37, "stale_version";
    /// The governance action breaks a rule: a shard map that does not validate or names an
    /// unregistered chain, a bad member or licence-type id, a bad parameter name, a certificate
    /// already revoked, and the like.
    InvalidGovernance = 38, "invalid_governance";
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a transaction in a block came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Applied.
    Valid,
    /// Kept in the block with no effect.
    Invalid(RejectCode),
}

impl Outcome {
    /// 0 for valid, else the reject code's number.
    pub fn as_u16(self) -> u16 {
        match self {
            Outcome::Valid => 0,
            Outcome::Invalid(c) => c.as_u16(),
        }
    }

    /// True when applied.
    pub fn is_valid(self) -> bool {
        self == Outcome::Valid
    }
}

impl From<Result<(), RejectCode>> for Outcome {
    fn from(r: Result<(), RejectCode>) -> Self {
        match r {
            Ok(()) => Outcome::Valid,
            Err(c) => Outcome::Invalid(c),
        }
    }
}

impl Encode for Outcome {
    fn encode(&self, w: &mut Writer) {
        w.u16(self.as_u16());
    }
}

impl Decode for Outcome {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.u16("outcome")? {
            0 => Ok(Outcome::Valid),
            n => RejectCode::from_u16(n)
                .map(Outcome::Invalid)
                .ok_or(CodecError::NonCanonical { what: "outcome", why: "unknown reject code" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_says_what_it_means() {
        for c in RejectCode::ALL {
            let d = c.describe();
            assert!(d.len() > 10 && !d.starts_with(' ') && !d.contains("  "), "{c:?}: {d:?}");
        }
        assert_eq!(RejectCode::Replay.describe(), "This transaction id was already accepted.");
    }

    #[test]
    fn codes_round_trip_by_number_and_name() {
        for &c in RejectCode::ALL {
            assert_eq!(RejectCode::from_u16(c.as_u16()), Some(c));
            assert_eq!(RejectCode::from_name(c.as_str()), Some(c));
            assert_eq!(Outcome::from_bytes(&Outcome::Invalid(c).to_bytes()).unwrap(), Outcome::Invalid(c));
        }
        assert_eq!(RejectCode::from_u16(0), None);
        assert!(Outcome::from_bytes(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn codes_are_dense_and_names_unique() {
        for (i, c) in RejectCode::ALL.iter().enumerate() {
            assert_eq!(c.as_u16() as usize, i + 1, "{c} breaks numbering");
        }
        let mut names: Vec<_> = RejectCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RejectCode::ALL.len());
    }
}
