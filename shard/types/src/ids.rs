//! Identifiers and time.

use std::fmt;

use crate::codec::{CodecError, Decode, Encode, Reader, Writer};

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex, as shown to people and in JSON.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parse 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out)?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &self.to_hex()[..12])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Encode for $name {
            fn encode(&self, w: &mut Writer) {
                w.raw(&self.0);
            }
        }

        impl Decode for $name {
            fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
                Ok(Self(r.array(stringify!($name))?))
            }
        }
    };
}

hash_id!(
    /// `blake3` of a transaction's canonical body bytes: the one name of a transaction.
    TxId
);
hash_id!(
    /// The hash of a holder's Ed25519 public key. No national ID number ever reaches a chain.
    HolderId
);
hash_id!(
    /// A licence. The first four bytes are the chain that holds it, so every later operation
    /// goes straight to that chain; the next eight the issuance's `valid_until`, so a chain's
    /// licences sort in about the order they were issued ([`LicenceId::derive`]).
    LicenceId
);
hash_id!(
    /// A grant: the id of the transaction that created it.
    GrantId
);
hash_id!(
    /// A 32-byte `blake3` digest (block hashes, Merkle nodes, document digests).
    Hash32
);

impl LicenceId {
    /// The chain that holds this licence.
    pub fn chain(&self) -> ChainId {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[..4]);
        ChainId(u32::from_be_bytes(b))
    }
}

impl From<TxId> for GrantId {
    fn from(id: TxId) -> Self {
        GrantId(id.0)
    }
}

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident, $int:ty, $read:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl Encode for $name {
            fn encode(&self, w: &mut Writer) {
                w.$read(self.0);
            }
        }

        impl Decode for $name {
            fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
                Ok(Self(r.$read(stringify!($name))?))
            }
        }
    };
}

int_id!(
    /// A chain (Raft group). Chain 0 is the meta chain.
    ChainId,
    u32,
    u32
);
int_id!(
    /// A consortium member (a department), as numbered in the consortium profile.
    MemberId,
    u16,
    u16
);
int_id!(
    /// A licence type (contract), as numbered in the consortium profile.
    LicenceTypeId,
    u16,
    u16
);
int_id!(
    /// A government service item, as numbered in the consortium profile.
    ItemId,
    u16,
    u16
);
int_id!(
    /// Milliseconds since the Unix epoch. Time enters the core only as a value of this type.
    Timestamp,
    u64,
    u64
);

impl ChainId {
    /// The meta chain: consortium governance, never licences.
    pub const META: ChainId = ChainId(0);

    /// True for the meta chain.
    pub fn is_meta(self) -> bool {
        self == Self::META
    }
}

impl Timestamp {
    /// One day in milliseconds.
    pub const DAY_MS: u64 = 86_400_000;

    /// `self + ms`, saturating.
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}
