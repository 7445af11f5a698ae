//! Canonical binary encoding.
//!
//! Every value that is hashed or signed has exactly one encoding: fixed-width little-endian
//! integers, `u32` length prefixes checked against a per-field maximum, one-byte enum tags, and
//! no trailing bytes. Decoding rejects anything another encoder could not have produced, so
//! `decode(bytes)` followed by `encode` gives back the same bytes, and two replicas never disagree
//! on what a transaction says.

use thiserror::Error;

/// Why a byte string is not a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The input ended before the value did.
    #[error("input ends early: {what} needs {needed} more bytes")]
    Truncated {
        /// The value being read.
        what: &'static str,
        /// Bytes still missing.
        needed: usize,
    },
    /// A length prefix is above the field's maximum.
    #[error("{what} has length {len}, above the maximum {max}")]
    TooLong {
        /// The field being read.
        what: &'static str,
        /// The length found.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// An enum tag or flag byte has no meaning.
    #[error("{what} has unknown tag {tag}")]
    UnknownTag {
        /// The field being read.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// Bytes are left over after the value.
    #[error("{extra} trailing bytes after the value")]
    Trailing {
        /// How many bytes are left.
        extra: usize,
    },
    /// The value decodes but breaks a canonical-form rule (ordering, duplicates, ranges).
    #[error("non-canonical {what}: {why}")]
    NonCanonical {
        /// The field being read.
        what: &'static str,
        /// The rule it breaks.
        why: &'static str,
    },
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self { buf: Vec::with_capacity(n) }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Write one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Write a `u16`, little-endian.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Write a `u32`, little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Write a `u64`, little-endian.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Write a bool as 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// Write bytes with no length prefix (fixed-size fields).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// Write a `u32` length prefix and the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(u32::try_from(v.len()).expect("encoded field longer than u32::MAX"));
        self.buf.extend_from_slice(v);
    }

    /// Write a `u32` count and each item.
    pub fn seq<T: Encode>(&mut self, items: &[T]) {
        self.u32(u32::try_from(items.len()).expect("sequence longer than u32::MAX"));
        for item in items {
            item.encode(self);
        }
    }

    /// Write a value.
    pub fn put<T: Encode + ?Sized>(&mut self, v: &T) {
        v.encode(self);
    }
}

/// Reads canonical encodings from a byte slice, never past its end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fail unless every byte was read.
    pub fn finish(self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Trailing { extra: self.buf.len() })
        }
    }

    /// Take the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated { what, needed: n - self.buf.len() });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Read a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// Read one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    /// Read a little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Read a little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Read a little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Read a bool written as 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CodecError::UnknownTag { what, tag }),
        }
    }

    /// Read a length prefix, failing when it exceeds `max`.
    pub fn len(&mut self, what: &'static str, max: usize) -> Result<usize, CodecError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(CodecError::TooLong { what, len, max });
        }
        Ok(len)
    }

    /// Read length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], CodecError> {
        let len = self.len(what, max)?;
        self.take(len, what)
    }

    /// Read a counted sequence of at most `max` items.
    pub fn seq<T: Decode>(&mut self, what: &'static str, max: usize) -> Result<Vec<T>, CodecError> {
        let n = self.len(what, max)?;
        // Each item takes at least one byte, so a lying count fails on truncation before it can
        // make us allocate more than the input size.
        let mut out = Vec::with_capacity(n.min(self.buf.len()));
        for _ in 0..n {
            out.push(T::decode(self)?);
        }
        Ok(out)
    }

    /// Read a value.
    pub fn get<T: Decode>(&mut self) -> Result<T, CodecError> {
        T::decode(self)
    }
}

/// A value with a canonical binary encoding.
pub trait Encode {
    /// Append the encoding to `w`.
    fn encode(&self, w: &mut Writer);

    /// The encoding as a fresh byte vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

/// A value that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Read one value from `r`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError>;

    /// Decode a whole buffer, rejecting trailing bytes.
    fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

impl Encode for u8 {
    fn encode(&self, w: &mut Writer) {
        w.u8(*self);
    }
}
impl Decode for u8 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u8("u8")
    }
}
impl Encode for u16 {
    fn encode(&self, w: &mut Writer) {
        w.u16(*self);
    }
}
impl Decode for u16 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u16("u16")
    }
}
impl Encode for u32 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self);
    }
}
impl Decode for u32 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u32("u32")
    }
}
impl Encode for u64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self);
    }
}
impl Decode for u64 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u64("u64")
    }
}
impl<const N: usize> Encode for [u8; N] {
    fn encode(&self, w: &mut Writer) {
        w.raw(self);
    }
}
impl<const N: usize> Decode for [u8; N] {
    fn decode(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.array("byte array")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_little_endian_fixed_width() {
        let mut w = Writer::new();
        w.u16(0x0102);
        w.u32(0x0304_0506);
        w.u64(7);
        w.bool(true);
        assert_eq!(w.into_bytes(), [2, 1, 6, 5, 4, 3, 7, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn length_above_maximum_is_refused_before_reading() {
        let mut w = Writer::new();
        w.bytes(&[0u8; 10]);
        let bytes = w.into_bytes();
        let err = Reader::new(&bytes).bytes("field", 9).unwrap_err();
        assert_eq!(err, CodecError::TooLong { what: "field", len: 10, max: 9 });
    }

    #[test]
    fn lying_count_fails_on_truncation_not_allocation() {
        let mut w = Writer::new();
        w.u32(1_000_000);
        let bytes = w.into_bytes();
        let err = Reader::new(&bytes).seq::<u64>("items", 2_000_000).unwrap_err();
        assert!(matches!(err, CodecError::Truncated { .. }));
    }

    #[test]
    fn bool_other_than_zero_or_one_is_refused() {
        assert_eq!(Reader::new(&[2]).bool("flag").unwrap_err(), CodecError::UnknownTag { what: "flag", tag: 2 });
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(u16::from_bytes(&[1, 0, 0]).unwrap_err(), CodecError::Trailing { extra: 1 });
    }
}
