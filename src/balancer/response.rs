//! `ResponseHead`: a backend's response head, parsed with the same strict
//! field rules as requests (a backend that sends something ambiguous gets a
//! 502, never a pass-through), and the framing of the body that follows.
//! It never writes anything to the client.

use super::head::{Framing, Head, Version};
use super::refusal::Refusal;
use super::scanner::HeadLimits;

/// How the response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: HEAD, 1xx, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub head: Head,
    pub status: u16,
    pub framing: BodyFraming,
    /// Whether the backend connection may carry another request after this.
    pub reusable: bool,
}

impl ResponseHead {
    /// Parses the head of a response to a request with `method`.
    pub fn parse(
        bytes: &[u8],
        limits: &HeadLimits,
        method: &[u8],
    ) -> Result<ResponseHead, Refusal> {
        let head = Head::parse(bytes, limits)?;
        let line = head.first_line();
        let version = Version::parse(line.get(..8).ok_or(Refusal::bad("malformed status line"))?)?;
        let status = match line.get(8..12) {
            Some([b' ', a, b, c]) if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(Refusal::bad("malformed status line")),
        };
        if !(100..=599).contains(&status) || line.get(12).is_some_and(|&b| b != b' ') {
            return Err(Refusal::bad("malformed status line"));
        }
        let framing = framing(&head, version, status, method)?;
        let reusable = version == Version::Http11
            && !head.connection().close
            && framing != BodyFraming::UntilClose
            && status != 101;
        Ok(ResponseHead {
            head,
            status,
            framing,
            reusable,
        })
    }

    /// The reason phrase, for the status line we send on.
    pub fn reason(&self) -> &[u8] {
        self.head.first_line().get(13..).unwrap_or_default()
    }
}

/// No body for HEAD, 1xx, 204 and 304 whatever the fields say; otherwise the
/// same strict rules as requests, and without a length, until close.
fn framing(
    head: &Head,
    version: Version,
    status: u16,
    method: &[u8],
) -> Result<BodyFraming, Refusal> {
    if method == b"HEAD" || status < 200 || status == 204 || status == 304 {
        return Ok(BodyFraming::Empty);
    }
    Ok(match head.framing(version)? {
        Framing::None => BodyFraming::UntilClose,
        Framing::Length(n) => BodyFraming::Length(n),
        Framing::Chunked => BodyFraming::Chunked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::balancer::scanner::TEST_LIMITS as LIMITS;

    fn parse(head: &str, method: &[u8]) -> Result<ResponseHead, Refusal> {
        ResponseHead::parse(head.as_bytes(), &LIMITS, method)
    }

    #[test]
    fn framings() {
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"GET").expect("valid");
        assert_eq!(
            (r.status, r.framing, r.reusable),
            (200, BodyFraming::Length(3), true)
        );
        assert_eq!(r.reason(), b"OK");
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", b"HEAD").expect("valid");
        assert_eq!(r.framing, BodyFraming::Empty);
        let r = parse("HTTP/1.0 200 OK\r\n\r\n", b"GET").expect("valid");
        assert_eq!((r.framing, r.reusable), (BodyFraming::UntilClose, false));
        let r = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            b"GET",
        );
        let r = r.expect("valid");
        assert_eq!((r.framing, r.reusable), (BodyFraming::Chunked, false));
        let r = parse("HTTP/1.1 204 \r\n\r\n", b"GET").expect("valid");
        assert_eq!(r.framing, BodyFraming::Empty);
    }

    #[test]
    fn refusals() {
        for head in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 200OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            // A coding besides chunked would be lost when the body is re-framed.
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(parse(head, b"GET").is_err(), "{head:?}");
        }
    }
}
