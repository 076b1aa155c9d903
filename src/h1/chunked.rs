//! The chunked transfer coding (RFC 9112 §7.1): a decoder fed whatever
//! slices the connection reads, which hands back where the data lies in
//! each slice (never copying it), and the framing an encoder writes.
//!
//! Everything is bounded: the decoder keeps a state and a few counters,
//! consumes at least one byte per step, caps the extension bytes of a body
//! (as hyper does) and the trailer section (`limits.max_header_bytes`,
//! `limits.max_headers`), and stores trailer bytes only when asked to.
//! It is as strict as hyper's decoder, and stricter in two places a server
//! behind limpet could read differently: a control byte in a chunk
//! extension and a bare LF in a trailer field are refused.

use std::ops::Range;

use crate::config::Limits;

/// Extension bytes one body may carry in all (hyper's bound): extensions
/// are ignored, and must not cost more than they are worth.
pub const MAX_EXTENSION_BYTES: usize = 16 * 1024;

/// Why a chunked body cannot be read: the client's (or the server's)
/// fault, answered 400 (or 502) and the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size")]
    Size,
    #[error("chunk size too large")]
    Overflow,
    #[error("control byte in a chunk extension")]
    Extension,
    #[error("chunk extensions too long")]
    ExtensionsTooLong,
    #[error("missing CRLF in chunked framing")]
    Crlf,
    #[error("malformed trailer field")]
    Trailer,
    #[error("trailer section too large")]
    TrailersTooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line starts: a hex digit must come.
    Start,
    /// In the hex digits.
    Size,
    /// Whitespace after the size.
    SizeSpace,
    /// In an extension, up to the CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// In chunk data, `remaining` bytes to go.
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field or the final CRLF starts.
    LineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// After the final CR.
    EndLf,
    Done,
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of the input taken (framing and data). With `done`, the
    /// message ends here and the next one starts.
    pub consumed: usize,
    /// Body bytes: a range of the input, ending at `consumed` (empty when
    /// there are none).
    pub data: Range<usize>,
    /// The last chunk and the trailer section are read.
    pub done: bool,
}

/// Decodes one chunked body after another ([`Decoder::reset`] between them).
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// The chunk size being read, then the data left of the chunk.
    remaining: u64,
    extension_bytes: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
    max_trailer_bytes: usize,
    max_trailer_fields: usize,
    keep_trailers: bool,
    trailers: Vec<u8>,
}

impl Decoder {
    /// A decoder whose trailer section may have `limits.max_headers` fields
    /// in `limits.max_header_bytes`; with `keep_trailers` their bytes are
    /// kept for [`Decoder::trailers`] (else only checked).
    pub fn new(limits: &Limits, keep_trailers: bool) -> Decoder {
        Decoder {
            state: State::Start,
            remaining: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
            max_trailer_bytes: limits.max_header_bytes,
            max_trailer_fields: limits.max_headers,
            keep_trailers,
            trailers: Vec::new(),
        }
    }

    /// Ready for the next body (the trailer buffer is kept for reuse).
    pub fn reset(&mut self) {
        self.state = State::Start;
        self.remaining = 0;
        self.extension_bytes = 0;
        self.trailer_bytes = 0;
        self.trailer_fields = 0;
        self.trailers.clear();
    }

    /// Has the whole body been read?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads from `input` up to the first data in it (returned as a range
    /// of it), the end of the body, or the end of the input. Call again
    /// with the rest while `consumed < input.len()` and not `done`.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ChunkedError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let left = input.len() - i;
                let n = usize::try_from(self.remaining).map_or(left, |r| r.min(left));
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                return Ok(Decoded {
                    consumed: i + n,
                    data: i..i + n,
                    done: false,
                });
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: i..i,
            done: self.state == State::Done,
        })
    }

    /// One byte of framing.
    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.state = match (self.state, b) {
            (State::Start, _) => {
                self.remaining = u64::from(hex(b).ok_or(ChunkedError::Size)?);
                State::Size
            }
            (State::Size, b' ' | b'\t') => State::SizeSpace,
            (State::Size | State::SizeSpace, b';') => State::Extension,
            (State::Size | State::SizeSpace | State::Extension, b'\r') => State::SizeLf,
            (State::Size, _) => {
                let digit = hex(b).ok_or(ChunkedError::Size)?;
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or(ChunkedError::Overflow)?;
                State::Size
            }
            (State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::SizeSpace, _) => return Err(ChunkedError::Size),
            (State::Extension, _) => {
                if b != b'\t' && (b < b' ' || b == 0x7f) {
                    return Err(ChunkedError::Extension);
                }
                self.extension_bytes += 1;
                if self.extension_bytes >= MAX_EXTENSION_BYTES {
                    return Err(ChunkedError::ExtensionsTooLong);
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.remaining == 0 => State::LineStart,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Start,
            (State::SizeLf | State::DataCr | State::DataLf, _) => return Err(ChunkedError::Crlf),
            (State::EndLf, b'\n') => State::Done,
            (State::EndLf, _) => return Err(ChunkedError::Crlf),
            (State::LineStart | State::TrailerName | State::TrailerValue | State::TrailerLf, _) => {
                self.trailer(b)?
            }
            (State::Data | State::Done, _) => self.state,
        };
        Ok(())
    }

    /// One byte of the trailer section: fields as in a head, without
    /// obs-fold or a bare LF, each line ending in CRLF.
    fn trailer(&mut self, b: u8) -> Result<State, ChunkedError> {
        if self.state == State::LineStart {
            if b == b'\r' {
                return Ok(State::EndLf);
            }
            self.trailer_fields += 1;
            if self.trailer_fields > self.max_trailer_fields {
                return Err(ChunkedError::TrailersTooLarge);
            }
        }
        self.keep(b)?;
        match (self.state, b) {
            (State::LineStart | State::TrailerName, _) if is_tchar(b) => Ok(State::TrailerName),
            (State::TrailerName, b':') => Ok(State::TrailerValue),
            (State::TrailerValue, b'\r') => Ok(State::TrailerLf),
            (State::TrailerValue, b'\t' | b' '..=b'~' | 0x80..) => Ok(State::TrailerValue),
            (State::TrailerLf, b'\n') => Ok(State::LineStart),
            (State::TrailerLf, _) => Err(ChunkedError::Crlf),
            _ => Err(ChunkedError::Trailer),
        }
    }

    /// Counts (and with `keep_trailers` stores) a byte of the trailer section.
    fn keep(&mut self, b: u8) -> Result<(), ChunkedError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(ChunkedError::TrailersTooLarge);
        }
        if self.keep_trailers {
            self.trailers.push(b);
        }
        Ok(())
    }

    /// The trailer fields (name, value without surrounding whitespace) of
    /// a body read to its end with `keep_trailers`.
    pub fn trailers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.trailers
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(|line| {
                let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
                let (name, value) = line.split_at(colon);
                (name, value.get(1..).unwrap_or_default().trim_ascii())
            })
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A token character (RFC 9110 §5.6.2), as in a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What ends every chunk's data.
pub const CRLF: &[u8] = b"\r\n";

/// The last chunk and an empty trailer section: the end of a body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The line that opens a chunk of `n` bytes (`n` > 0; a chunk of none is
/// the last chunk): `n` in hex and CRLF, built without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLine {
    buf: [u8; 18],
    len: u8,
}

impl SizeLine {
    pub fn new(n: u64) -> SizeLine {
        let digits = (16 - n.leading_zeros() / 4).max(1) as usize;
        let mut buf = [0u8; 18];
        for (i, slot) in buf[..digits].iter_mut().enumerate() {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            *slot = b"0123456789abcdef"[nibble as usize];
        }
        buf[digits..digits + 2].copy_from_slice(CRLF);
        SizeLine {
            buf,
            len: digits as u8 + 2,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests;
