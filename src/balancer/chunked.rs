//! `ChunkedDecoder`: a strict, incremental decoder of the chunked transfer
//! coding (RFC 9112 §7.1) in both directions. It refuses invalid chunk sizes,
//! bare LFs, data longer than its size and malformed trailers, and re-emits
//! the body either as normalised chunks (extensions dropped, sizes written by
//! us, trailers kept but for the fields no trailer may carry) or as plain
//! data. Because the balancer always re-frames
//! what it forwards, the next hop never sees the sender's framing bytes. It
//! does no I/O.

use super::fields::parse_field_line;
use super::head::Name;
use super::refusal::Refusal;
use std::io::Write;

/// What the decoder writes for the data it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Normalised chunks and the trailers.
    Chunks,
    /// The data alone; trailers are dropped.
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { digits: u8, value: u64 },
    Extension { value: u64, len: usize },
    SizeLf { value: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    Trailers,
    Done,
}

/// Decoder state across reads of one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The trailer lines kept so far.
    trailers: Vec<u8>,
    /// Every trailer byte read, kept or not (what the limit counts).
    trailer_bytes: usize,
    max_trailer_bytes: usize,
    /// The body's data bytes so far (what a body limit counts).
    pub data_len: u64,
}

const MAX_SIZE_DIGITS: u8 = 15;
const MAX_EXTENSION: usize = 4096;

impl ChunkedDecoder {
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size {
                digits: 0,
                value: 0,
            },
            trailers: Vec::new(),
            trailer_bytes: 0,
            max_trailer_bytes,
            data_len: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as it can, appending to `out`; returns the
    /// bytes consumed (fewer than given only once the body is done).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, emit: Emit) -> Result<usize, Refusal> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { left } = self.state {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                self.data(&input[i..i + take], out, emit);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                continue;
            }
            if self.state == State::Done {
                return Ok(i);
            }
            self.state = self.step(input[i], out, emit)?;
            i += 1;
        }
        Ok(i)
    }

    fn data(&mut self, data: &[u8], out: &mut Vec<u8>, emit: Emit) {
        self.data_len += data.len() as u64;
        if emit == Emit::Chunks {
            let _ = write!(out, "{:x}\r\n", data.len());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(data);
        }
    }

    /// One framing byte (anything but chunk data).
    fn step(&mut self, b: u8, out: &mut Vec<u8>, emit: Emit) -> Result<State, Refusal> {
        Ok(match self.state {
            State::Size { digits, value } => match (b as char).to_digit(16) {
                Some(d) if digits < MAX_SIZE_DIGITS => State::Size {
                    digits: digits + 1,
                    value: value * 16 + u64::from(d),
                },
                Some(_) => return Err(Refusal::bad("chunk size too large")),
                None if digits == 0 => return Err(Refusal::bad("invalid chunk size")),
                None if b == b';' => State::Extension { value, len: 0 },
                None if b == b'\r' => State::SizeLf { value },
                None => return Err(Refusal::bad("invalid chunk size")),
            },
            State::Extension { value, len } => match b {
                b'\r' => State::SizeLf { value },
                _ if len >= MAX_EXTENSION => return Err(Refusal::bad("chunk extension too long")),
                b'\t' | b' '..=b'~' => State::Extension {
                    value,
                    len: len + 1,
                },
                _ => return Err(Refusal::bad("invalid chunk extension")),
            },
            State::SizeLf { value } => match b {
                b'\n' if value == 0 => State::Trailers,
                b'\n' => State::Data { left: value },
                _ => return Err(Refusal::bad("invalid chunk size line")),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                digits: 0,
                value: 0,
            },
            State::DataCr | State::DataLf => {
                return Err(Refusal::bad("chunk data longer than its size"))
            }
            State::Trailers => {
                self.trailers.push(b);
                self.trailer_bytes += 1;
                if self.trailer_bytes > self.max_trailer_bytes {
                    return Err(Refusal::new(431, "trailers too large"));
                }
                if b == b'\n' && self.trailer_line_done()? {
                    if emit == Emit::Chunks {
                        out.extend_from_slice(b"0\r\n");
                        out.extend_from_slice(&self.trailers);
                    }
                    self.trailers = Vec::new();
                    State::Done
                } else {
                    State::Trailers
                }
            }
            State::Data { .. } | State::Done => self.state,
        })
    }

    /// Checks the trailer line that just ended, and drops it if no trailer
    /// may carry its field (`may_trail`); true when it was the blank line
    /// that closes the body.
    fn trailer_line_done(&mut self) -> Result<bool, Refusal> {
        let t = &self.trailers;
        let end = t.len() - 1;
        if end == 0 || t[end - 1] != b'\r' {
            return Err(Refusal::bad("bare LF in trailers"));
        }
        let start = t[..end - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        if start == end - 1 {
            return Ok(true);
        }
        let field = parse_field_line(&t[start..end - 1])?;
        if !may_trail(&t[start..][field.name]) {
            self.trailers.truncate(start);
        }
        Ok(false)
    }
}

/// Whether a trailer field is passed on. Not one the balancer reads or
/// writes in a head (`Name`: framing, `Host`, `Connection` and the other
/// hop-by-hop fields, the forwarding fields): RFC 9110 §6.5.1 bars such
/// fields from trailers, and a next hop that merged trailers into the head
/// would take a client's `Content-Length` or `X-Forwarded-For` from them.
/// Nor a name with `_`, for the reason `forward` drops those from heads.
fn may_trail(name: &[u8]) -> bool {
    Name::of(name) == Name::Other && !name.contains(&b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], emit: Emit) -> Result<(Vec<u8>, usize, bool), Refusal> {
        let mut d = ChunkedDecoder::new(1024);
        let mut out = Vec::new();
        let mut used = 0;
        // One byte at a time: state must survive any split.
        for chunk in input.chunks(1) {
            if d.is_done() {
                break;
            }
            used += d.feed(chunk, &mut out, emit)?;
        }
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_and_normalises() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let (out, used, done) = decode(body, Emit::Data).expect("valid");
        assert_eq!(
            (out.as_slice(), used, done),
            (&b"hello world"[..], body.len() - 4, true)
        );
        let (out, _, _) = decode(body, Emit::Chunks).expect("valid");
        let expected: &[u8] = b"1\r\nh\r\n1\r\ne\r\n1\r\nl\r\n1\r\nl\r\n1\r\no\r\n";
        assert!(out.starts_with(expected));
        assert!(out.ends_with(b"0\r\nX-Sum: 1\r\n\r\n"));
        let mut d = ChunkedDecoder::new(1024);
        let mut whole = Vec::new();
        d.feed(body, &mut whole, Emit::Chunks).expect("valid");
        assert_eq!(whole, b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n");
    }

    #[test]
    fn trailers_lose_the_fields_no_trailer_may_carry() {
        let body = b"0\r\nX-Sum: 1\r\nContent-Length: 99\r\nTransfer-Encoding: gzip\r\nhost: b\r\n\
                     X-Forwarded-For: 6.6.6.6\r\nX_Forwarded_For: 5.5.5.5\r\nConnection: close\r\nX-Check: 2\r\n\r\n";
        let (out, used, done) = decode(body, Emit::Chunks).expect("valid");
        assert_eq!(
            (out.as_slice(), used, done),
            (
                &b"0\r\nX-Sum: 1\r\nX-Check: 2\r\n\r\n"[..],
                body.len(),
                true
            )
        );
        // Dropped lines count against the limit too.
        let mut d = ChunkedDecoder::new(64);
        let many = b"0\r\nHost: a\r\nHost: a\r\nHost: a\r\nHost: a\r\nHost: a\r\nHost: a\r\nHost: a\r\n\r\n";
        let refused = d
            .feed(many, &mut Vec::new(), Emit::Chunks)
            .map_err(|r| r.status);
        assert_eq!(refused, Err(431));
    }

    #[test]
    fn refusals() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b" 5\r\nhello\r\n",
            b"5 \r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello!\r\n",
            b"5\r\nhello\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"1000000000000000\r\n",
            b"5;\x01\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\nX: y\n\r\n",
        ] {
            assert!(decode(bad, Emit::Data).is_err(), "{bad:?}");
        }
    }
}
