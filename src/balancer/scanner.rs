//! `HeadScanner`: finds where a message head ends in bytes that arrive a few
//! at a time, looking at each byte once, so a client that sends one byte per
//! packet costs linear work. It refuses a bare LF the moment it sees one and
//! enforces the request-line and head size limits while the head is still
//! incomplete. It never parses fields: `request` and `response` do that on
//! the complete head.

use super::refusal::Refusal;

/// How large a head may grow before it is refused.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// The longest first line (request line or status line), CRLF excluded.
    pub max_line: usize,
    /// The longest head, all lines and CRLFs included.
    pub max_bytes: usize,
    /// The most field lines.
    pub max_fields: usize,
}

/// Generous limits for unit tests of the parsers.
#[cfg(test)]
pub const TEST_LIMITS: HeadLimits = HeadLimits {
    max_line: 8192,
    max_bytes: 16384,
    max_fields: 100,
};

/// Where a complete head lies in the buffer: leading empty lines are
/// skipped (RFC 9112 §2.2), `end` is just past the blank line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadSpan {
    pub start: usize,
    pub end: usize,
}

/// Incremental state over one head; reset after each complete head.
#[derive(Debug, Default)]
pub struct HeadScanner {
    scanned: usize,
    head_start: usize,
    line_start: usize,
    first_line_done: bool,
}

impl HeadScanner {
    /// Looks at the bytes not seen before; `Ok(None)` means "read more".
    pub fn scan(&mut self, buf: &[u8], limits: &HeadLimits) -> Result<Option<HeadSpan>, Refusal> {
        let mut i = self.scanned;
        while let Some(off) = memchr::memchr(b'\n', &buf[i..]) {
            let lf = i + off;
            if lf == 0 || buf[lf - 1] != b'\r' || lf - 1 < self.line_start {
                return Err(Refusal::bad("bare LF line ending"));
            }
            let line_len = lf - 1 - self.line_start;
            i = lf + 1;
            if line_len == 0 {
                if self.first_line_done {
                    let span = HeadSpan {
                        start: self.head_start,
                        end: i,
                    };
                    *self = HeadScanner::default();
                    return Ok(Some(span));
                }
                self.head_start = i;
                // Empty lines before a head count: without a bound, a
                // client could send them forever into an unconsumed buffer.
                if i > limits.max_bytes {
                    return Err(Refusal::new(431, "request head too large"));
                }
            } else if !self.first_line_done {
                if line_len > limits.max_line {
                    return Err(Refusal::new(414, "request line too long"));
                }
                self.first_line_done = true;
            }
            self.line_start = i;
            if i - self.head_start > limits.max_bytes {
                return Err(Refusal::new(431, "request head too large"));
            }
        }
        self.scanned = buf.len();
        if !self.first_line_done && buf.len() - self.line_start > limits.max_line {
            return Err(Refusal::new(414, "request line too long"));
        }
        if buf.len() - self.head_start > limits.max_bytes {
            return Err(Refusal::new(431, "request head too large"));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_line: 32,
        max_bytes: 64,
        max_fields: 4,
    };

    #[test]
    fn finds_the_end_across_reads() {
        let full = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let mut s = HeadScanner::default();
        for n in 1..full.len() - 4 {
            assert_eq!(s.scan(&full[..n], &LIMITS), Ok(None), "at {n}");
        }
        let span = s.scan(full, &LIMITS).expect("valid").expect("complete");
        assert_eq!(
            span,
            HeadSpan {
                start: 2,
                end: full.len() - 4
            }
        );
    }

    #[test]
    fn looks_no_further_than_the_head() {
        for (after, bytes) in [
            (&b"a\nb"[..], &b"POST / HTTP/1.1\r\nHost: a\r\n\r\na\nb"[..]),
            (
                b"GET / HTTP/1.1\r\n\r\n",
                b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            ),
        ] {
            let span = HeadScanner::default()
                .scan(bytes, &LIMITS)
                .expect("valid")
                .expect("complete");
            assert_eq!(
                (span.start, span.end),
                (0, bytes.len() - after.len()),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn refuses_bare_lf_wherever_it_arrives() {
        for head in [
            &b"\nGET / HTTP/1.1\r\n\r\n"[..],
            b"\r\n\nGET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        ] {
            for cut in 0..=head.len() {
                let mut s = HeadScanner::default();
                let first = s.scan(&head[..cut], &LIMITS);
                let result = first.and_then(|_| s.scan(head, &LIMITS));
                assert_eq!(
                    result.map_err(|r| r.status),
                    Err(400),
                    "{head:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn refuses_endless_empty_lines() {
        let mut s = HeadScanner::default();
        let empty_lines = b"\r\n".repeat(40);
        assert_eq!(
            s.scan(&empty_lines, &LIMITS).map_err(|r| r.status),
            Err(431)
        );
    }

    #[test]
    fn refuses_bare_lf_and_long_lines() {
        let mut s = HeadScanner::default();
        assert_eq!(
            s.scan(b"GET / HTTP/1.1\nHost: a\n\n", &LIMITS)
                .map_err(|r| r.status),
            Err(400)
        );
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(&[b'a'; 40], &LIMITS).map_err(|r| r.status), Err(414));
        let mut s = HeadScanner::default();
        let long = [&b"GET / HTTP/1.1\r\n"[..], &[b'a'; 60]].concat();
        assert_eq!(s.scan(&long, &LIMITS).map_err(|r| r.status), Err(431));
    }
}
