//! Frame one request and one answer on a QUIC stream, refusing sizes above the limit before reading them.
//!
//! ```text
//!  request:  u32-LE len ‖ payload                 then the caller finishes its send side
//!  answer:   u8 status ‖ u32-LE len ‖ payload      status 0: payload is the answer
//!                                                  status 1: payload is a UTF-8 error message
//!  bad frame ─► STOP_SENDING + RESET_STREAM with a code from [`code`]; the connection lives on
//! ```
//!
//! A frame's payload is read chunk by chunk as it arrives instead of into a buffer sized from
//! the header, so a peer that announces a large frame and sends nothing holds no memory.

use bytes::{Bytes, BytesMut};
use quinn::{ReadError, RecvStream, SendStream, WriteError};

use super::NetError;

/// Bytes before a request's payload: its length.
pub const REQUEST_HEADER_LEN: usize = 4;
/// Bytes before an answer's payload: status and length.
pub const ANSWER_HEADER_LEN: usize = 5;

/// First buffer for a payload; it grows as chunks arrive, up to the announced length.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Application error codes a node puts on a stream it refuses, so the caller can tell why.
pub mod code {
    use quinn::VarInt;

    /// The caller gave up on the stream (dropped it after a timeout).
    pub const CANCELLED: VarInt = VarInt::from_u32(0);
    /// The announced frame is larger than the reader accepts.
    pub const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(1);
    /// The frame ended early or could not be read.
    pub const BAD_FRAME: VarInt = VarInt::from_u32(2);
}

/// How an answer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The handler answered; the payload is its answer.
    Ok = 0,
    /// The handler failed; the payload is its UTF-8 error message.
    RemoteError = 1,
}

impl TryFrom<u8> for Status {
    type Error = NetError;

    fn try_from(byte: u8) -> Result<Self, NetError> {
        match byte {
            0 => Ok(Status::Ok),
            1 => Ok(Status::RemoteError),
            other => Err(NetError::Protocol(format!("unknown answer status {other}"))),
        }
    }
}

/// `len` if it is at most `max`.
pub fn check_len(len: usize, max: usize) -> Result<usize, NetError> {
    if len > max {
        return Err(NetError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// The header of a request of `len` bytes.
pub fn request_header(len: usize, max: usize) -> Result<[u8; REQUEST_HEADER_LEN], NetError> {
    let len = u32::try_from(check_len(len, max)?).map_err(|_| NetError::FrameTooLarge { len, max })?;
    Ok(len.to_le_bytes())
}

/// The header of an answer of `len` bytes.
pub fn answer_header(status: Status, len: usize, max: usize) -> Result<[u8; ANSWER_HEADER_LEN], NetError> {
    let len = u32::try_from(check_len(len, max)?).map_err(|_| NetError::FrameTooLarge { len, max })?;
    let mut header = [0; ANSWER_HEADER_LEN];
    header[0] = status as u8;
    header[1..].copy_from_slice(&len.to_le_bytes());
    Ok(header)
}

/// Length of a request from its header, refused above `max`.
pub fn parse_request_header(header: [u8; REQUEST_HEADER_LEN], max: usize) -> Result<usize, NetError> {
    check_len(u32::from_le_bytes(header) as usize, max)
}

/// Status and length of an answer from its header; an unknown status or a length above `max`
/// is refused.
pub fn parse_answer_header(header: [u8; ANSWER_HEADER_LEN], max: usize) -> Result<(Status, usize), NetError> {
    let status = Status::try_from(header[0])?;
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    Ok((status, check_len(len, max)?))
}

/// Why a frame could not be read from a stream.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The header was refused (too large, unknown status).
    Frame(NetError),
    /// The stream finished before the frame did.
    Truncated { expected: usize, got: usize },
    /// The stream or its connection failed.
    Stream(ReadError),
}

impl From<ReadError> for ReadFailure {
    fn from(e: ReadError) -> Self {
        ReadFailure::Stream(e)
    }
}

async fn read_header<const N: usize>(recv: &mut RecvStream) -> Result<[u8; N], ReadFailure> {
    let mut header = [0; N];
    recv.read_exact(&mut header).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => ReadFailure::Truncated { expected: N, got },
        quinn::ReadExactError::ReadError(e) => ReadFailure::Stream(e),
    })?;
    Ok(header)
}

/// Read exactly `len` payload bytes.
async fn read_payload(recv: &mut RecvStream, len: usize) -> Result<Bytes, ReadFailure> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // Most small frames arrive as one chunk: hand it on without copying.
    let first = match recv.read_chunk(len, true).await? {
        Some(chunk) => chunk.bytes,
        None => return Err(ReadFailure::Truncated { expected: len, got: 0 }),
    };
    if first.len() == len {
        return Ok(first);
    }
    let mut buf = BytesMut::with_capacity(len.min(INITIAL_BUFFER).max(first.len()));
    buf.extend_from_slice(&first);
    while buf.len() < len {
        match recv.read_chunk(len - buf.len(), true).await? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => return Err(ReadFailure::Truncated { expected: len, got: buf.len() }),
        }
    }
    Ok(buf.freeze())
}

/// Read one request frame; bytes after it are not read.
pub(crate) async fn read_request(recv: &mut RecvStream, max: usize) -> Result<Bytes, ReadFailure> {
    let header = read_header::<REQUEST_HEADER_LEN>(recv).await?;
    let len = parse_request_header(header, max).map_err(ReadFailure::Frame)?;
    read_payload(recv, len).await
}

/// Read one answer frame.
pub(crate) async fn read_answer(recv: &mut RecvStream, max: usize) -> Result<(Status, Bytes), ReadFailure> {
    let header = read_header::<ANSWER_HEADER_LEN>(recv).await?;
    let (status, len) = parse_answer_header(header, max).map_err(ReadFailure::Frame)?;
    Ok((status, read_payload(recv, len).await?))
}

/// Write one request frame and finish the send side. The length must already be checked.
pub(crate) async fn write_request(
    send: &mut SendStream,
    header: [u8; REQUEST_HEADER_LEN],
    payload: Bytes,
) -> Result<(), WriteError> {
    send.write_all_chunks(&mut [Bytes::copy_from_slice(&header), payload]).await?;
    send.finish()?;
    Ok(())
}

/// Write one answer frame and finish the send side. The length must already be checked.
pub(crate) async fn write_answer(
    send: &mut SendStream,
    header: [u8; ANSWER_HEADER_LEN],
    payload: Bytes,
) -> Result<(), WriteError> {
    send.write_all_chunks(&mut [Bytes::copy_from_slice(&header), payload]).await?;
    send.finish()?;
    Ok(())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = request_header(513, 1024).unwrap();
        assert_eq!(h, [1, 2, 0, 0]);
        assert_eq!(parse_request_header(h, 1024).unwrap(), 513);
        let h = answer_header(Status::RemoteError, 7, 1024).unwrap();
        assert_eq!(h, [1, 7, 0, 0, 0]);
        assert_eq!(parse_answer_header(h, 1024).unwrap(), (Status::RemoteError, 7));
        assert_eq!(parse_answer_header(answer_header(Status::Ok, 0, 0).unwrap(), 0).unwrap(), (Status::Ok, 0));
    }

    #[test]
    fn sizes_above_the_limit_are_refused_both_ways() {
        assert!(matches!(request_header(1025, 1024), Err(NetError::FrameTooLarge { len: 1025, max: 1024 })));
        assert!(matches!(
            parse_request_header(u32::MAX.to_le_bytes(), super::super::MAX_FRAME),
            Err(NetError::FrameTooLarge { len, max }) if len == u32::MAX as usize && max == super::super::MAX_FRAME
        ));
        assert!(matches!(parse_answer_header([0, 1, 4, 0, 0], 1024), Err(NetError::FrameTooLarge { len: 1025, .. })));
    }

    #[test]
    fn unknown_status_is_a_protocol_error() {
        assert!(matches!(parse_answer_header([2, 0, 0, 0, 0], 1024), Err(NetError::Protocol(_))));
    }
}
