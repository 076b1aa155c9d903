//! Request and response heads parsed once, with `httparse`, into offsets
//! over the bytes as received: nothing is copied, and the `Vec` of fields
//! is reused from one message to the next, so a connection's steady state
//! allocates nothing here.
//!
//! The verdict depends only on the bytes, never on how they arrived: the
//! parser reads at most `limits.max_header_bytes` of them, and a head that
//! does not end within those is too large (431) whatever follows.

use std::mem::MaybeUninit;

use http::{Method, StatusCode, Version};

use super::fields::{Coding, Facts, Field, Name};
use super::target::{self, Form};
use super::{HeadError, Span};
use crate::config::Limits;

/// What a call to [`parse_request`] or [`parse_response`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is complete; its fields are filled in.
    Complete,
    /// The head does not end within the bytes so far: read more.
    Partial,
}

/// A request head as offsets into the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Where the request line starts: after the empty lines a client may
    /// send before it (RFC 9112 §2.2), which are not written on.
    pub start: usize,
    pub method: Method,
    pub target: Span,
    pub form: Form,
    /// `HTTP_10` or `HTTP_11`.
    pub version: Version,
    pub fields: Vec<Field>,
    /// Bytes of the head, the blank line included: the body starts here.
    pub len: usize,
    pub facts: Facts,
}

/// A response head as offsets into the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Where the status line starts, after any empty lines.
    pub start: usize,
    pub status: StatusCode,
    pub reason: Span,
    /// `HTTP_10` or `HTTP_11`.
    pub version: Version,
    pub fields: Vec<Field>,
    /// Bytes of the head, the blank line included: the body starts here.
    pub len: usize,
    pub facts: Facts,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            start: 0,
            method: Method::GET,
            target: Span::default(),
            form: Form::Origin,
            version: Version::HTTP_11,
            fields: Vec::new(),
            len: 0,
            facts: Facts::default(),
        }
    }
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            start: 0,
            status: StatusCode::OK,
            reason: Span::default(),
            version: Version::HTTP_11,
            fields: Vec::new(),
            len: 0,
            facts: Facts::default(),
        }
    }
}

impl RequestHead {
    /// Does the client keep the connection open after this exchange
    /// (RFC 9112 §9.3)?
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.facts)
    }

    /// The path and query: the target in origin form, the part after the
    /// authority in absolute form (may be empty, meaning `/`).
    pub fn path(&self) -> Span {
        match self.form {
            Form::Absolute { path, .. } => path,
            Form::Origin | Form::Authority | Form::Asterisk => self.target,
        }
    }
}

impl ResponseHead {
    /// Does the server keep the connection open after this response?
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.facts)
    }
}

fn keep_alive(version: Version, facts: &Facts) -> bool {
    !facts.connection.close && (version == Version::HTTP_11 || facts.connection.keep_alive)
}

/// Field slots on the stack: enough for the default `max_headers` (100).
const STACK_FIELDS: usize = 128;

/// Parses the request head at the start of `buf` into `head` (whose fields
/// are replaced). On an error `head` holds whatever was read before it.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Parsed, HeadError> {
    let buf = &buf[..buf.len().min(limits.max_header_bytes)];
    let mut stack = [const { MaybeUninit::uninit() }; STACK_FIELDS];
    let mut heap = Vec::new();
    let slots = slots(&mut stack, &mut heap, limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    // The version follows the target and a space.
    let version_at = req
        .path
        .map_or(0, |p| offset(buf, p.as_bytes()) + p.len() + 1);
    let Some(len) = judge(parsed, buf, version_at, limits)? else {
        return Ok(Parsed::Partial);
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Syntax(httparse::Error::Token));
    };
    head.start = offset(buf, method.as_bytes());
    head.method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Method)?;
    head.version = version(minor);
    let at = offset(buf, path.as_bytes());
    head.target = Span::of(at, at + path.len());
    head.len = len;
    head.form = target::form(&head.method, buf, head.target)?;
    head.facts = fields(buf, len, req.headers, &mut head.fields)?;
    lengths(head.version, &head.facts)?;
    if !matches!(head.facts.coding, Coding::None | Coding::Chunked) {
        return Err(HeadError::Coding);
    }
    Ok(Parsed::Complete)
}

/// Parses the response head at the start of `buf` into `head` (whose fields
/// are replaced). On an error `head` holds whatever was read before it.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    head: &mut ResponseHead,
) -> Result<Parsed, HeadError> {
    let buf = &buf[..buf.len().min(limits.max_header_bytes)];
    let mut stack = [const { MaybeUninit::uninit() }; STACK_FIELDS];
    let mut heap = Vec::new();
    let slots = slots(&mut stack, &mut heap, limits.max_headers);
    let mut res = httparse::Response::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, slots);
    let Some(len) = judge(parsed, buf, first_line(buf), limits)? else {
        return Ok(Parsed::Partial);
    };
    let (Some(minor), Some(code)) = (res.version, res.code) else {
        return Err(HeadError::Syntax(httparse::Error::Status));
    };
    head.start = first_line(buf);
    head.version = version(minor);
    head.status = StatusCode::from_u16(code).map_err(|_| HeadError::Status)?;
    head.reason = reason(buf, head.start);
    head.len = len;
    head.facts = fields(buf, len, res.headers, &mut head.fields)?;
    lengths(head.version, &head.facts)?;
    Ok(Parsed::Complete)
}

/// `limit` field slots, on the stack when they fit.
fn slots<'s, 'b>(
    stack: &'s mut [MaybeUninit<httparse::Header<'b>>; STACK_FIELDS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
    limit: usize,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    if limit <= STACK_FIELDS {
        &mut stack[..limit]
    } else {
        heap.resize_with(limit, MaybeUninit::uninit);
        heap
    }
}

/// What `httparse` said, as this module says it: the head's length, None
/// while it has not ended, or the fault. `version_at` is where the version
/// starts (`httparse` stops there when it refuses it).
fn judge(
    parsed: httparse::Result<usize>,
    buf: &[u8],
    version_at: usize,
    limits: &Limits,
) -> Result<Option<usize>, HeadError> {
    let fault = match parsed {
        Ok(httparse::Status::Complete(len)) => return Ok(Some(len)),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::Version) => version_error(buf.get(version_at..).unwrap_or_default()),
        Err(httparse::Error::TooManyHeaders) => Some(HeadError::TooManyFields),
        Err(e) => Some(HeadError::Syntax(e)),
    };
    match fault {
        Some(e) => Err(e),
        // Not ended within max_header_bytes: it never will.
        None if buf.len() >= limits.max_header_bytes => Err(HeadError::TooLarge),
        None => Ok(None),
    }
}

/// The framing faults of any message (RFC 9112 §6.1): `Transfer-Encoding`
/// in HTTP/1.0, and with `Content-Length`.
fn lengths(version: Version, facts: &Facts) -> Result<(), HeadError> {
    if facts.coding == Coding::None {
        Ok(())
    } else if version == Version::HTTP_10 {
        Err(HeadError::TransferEncodingHttp10)
    } else if facts.content_lengths > 0 {
        Err(HeadError::BothLengths)
    } else {
        Ok(())
    }
}

fn version(minor: u8) -> Version {
    if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

/// A version `httparse` refused: a well-formed `HTTP/d.d` is one limpet
/// does not speak (505), anything else is malformed; None while the bytes
/// so far could still be either, so the verdict does not depend on how the
/// bytes arrive.
fn version_error(v: &[u8]) -> Option<HeadError> {
    let fits = |(k, &b): (usize, &u8)| match k {
        0..=4 => b == b"HTTP/"[k],
        5 | 7 => b.is_ascii_digit(),
        _ => b == b'.',
    };
    if !v.iter().take(8).enumerate().all(fits) {
        Some(HeadError::Syntax(httparse::Error::Version))
    } else if v.len() < 8 {
        None
    } else {
        Some(HeadError::Version)
    }
}

/// Where `part`, a slice `httparse` took from `buf`, starts in it.
fn offset(buf: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(buf.as_ptr() as usize)
        .min(buf.len())
}

/// Where the first line starts, after empty lines.
fn first_line(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// The reason phrase: after `HTTP/1.x NNN ` on the status line that starts
/// at `start`. Found here rather than taken from `httparse`, which hands
/// back a reason with obs-text as an empty string of its own.
fn reason(buf: &[u8], start: usize) -> Span {
    let line_end = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| start + i);
    let end = if line_end > start && buf[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    };
    Span::of((start + 13).min(end), end)
}

/// The fields as offsets, into `out`, and their facts. `len` is where the
/// head ends.
fn fields(
    buf: &[u8],
    len: usize,
    parsed: &[httparse::Header<'_>],
    out: &mut Vec<Field>,
) -> Result<Facts, HeadError> {
    out.clear();
    let mut facts = Facts::default();
    for h in parsed {
        let name = offset(buf, h.name.as_bytes());
        let value = offset(buf, h.value);
        let value_end = value + h.value.len();
        let line_end = line_end(buf, value_end).min(len);
        let field = Field {
            name: Span::of(name, name + h.name.len()),
            value: Span::of(value, value_end),
            line: Span::of(name, line_end),
            known: Name::of(h.name.as_bytes()),
        };
        facts.add(&field, buf)?;
        out.push(field);
    }
    Ok(facts)
}

/// The end of the line whose value ends at `at`: past trailing whitespace
/// and the CRLF (or bare LF) `httparse` accepted.
fn line_end(buf: &[u8], at: usize) -> usize {
    buf.get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(buf.len(), |i| at + i + 1)
}

#[cfg(test)]
mod tests;
