//! The heads the balancer sends on: the request head for a backend (origin
//! form, HTTP/1.1, hop-by-hop fields removed, `X-Forwarded-*` and
//! `Forwarded` set by us, our own framing) and the response head for the
//! client. Pure functions from parsed heads to bytes; no I/O.

use super::head::{Head, Name, Version};
use super::request::RequestHead;
use super::response::ResponseHead;
use std::net::IpAddr;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus those the balancer always writes itself.
fn dropped_from_request(name: Name) -> bool {
    is_hop_by_hop(name)
        || matches!(
            name,
            Name::Host
                | Name::ContentLength
                | Name::Expect
                | Name::XForwardedFor
                | Name::XForwardedProto
                | Name::XForwardedHost
                | Name::Forwarded
        )
}

/// A field name with `_` is dropped, as nginx and gunicorn 22+ do: CGI
/// and WSGI turn `-` into `_`, so an app (behind gunicorn 20.1, Debian
/// 12's) would read a client's `X_Forwarded_For` as the `X-Forwarded-For`
/// the balancer sets. (No known name holds `_`.)
fn has_underscore(known: Name, name: &[u8]) -> bool {
    known == Name::Other && name.contains(&b'_')
}

fn is_hop_by_hop(name: Name) -> bool {
    matches!(
        name,
        Name::Connection
            | Name::KeepAlive
            | Name::ProxyConnection
            | Name::TransferEncoding
            | Name::Te
            | Name::Upgrade
            | Name::ProxyAuthorization
            | Name::ProxyAuthenticate
    )
}

/// The field names a `Connection` field lists: dropped too. Most heads
/// list only `keep-alive` or `upgrade` (fields dropped anyway) and need
/// no list.
fn connection_tokens(head: &Head) -> Vec<&[u8]> {
    if !head.connection().names_fields {
        return Vec::new();
    }
    head.values(Name::Connection)
        .flat_map(super::fields::list_items)
        .collect()
}

/// Appends `n` in decimal, as `write!` would, without the formatter (it
/// showed in profiles of the request path).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How the body that follows a head we send is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    None,
    Length(u64),
    Chunked,
    /// Until we close the connection (responses to HTTP/1.0 clients).
    Close,
}

fn push_framing(out: &mut Vec<u8>, framing: OutFraming) {
    match framing {
        OutFraming::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => push_field(out, b"Transfer-Encoding", b"chunked"),
        OutFraming::None | OutFraming::Close => {}
    }
}

/// Where the request came from, for the forwarding fields: a client
/// connection's address, written out once when it is accepted rather than
/// for every request it sends (it showed in profiles of the request path).
pub struct Origin {
    /// The address as `Display` writes it.
    ip: Box<str>,
    v6: bool,
    pub tls: bool,
}

impl Origin {
    pub fn new(ip: IpAddr, tls: bool) -> Self {
        Origin {
            ip: ip.to_string().into_boxed_str(),
            v6: ip.is_ipv6(),
            tls,
        }
    }
}

/// The request head a backend receives.
pub fn request_head(req: &RequestHead, origin: &Origin, framing: OutFraming) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.head.first_line().len() + 512);
    out.extend_from_slice(req.method());
    out.push(b' ');
    out.extend_from_slice(req.path().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(&mut out, b"Host", req.authority().as_bytes());
    let tokens = connection_tokens(&req.head);
    for (known, name, value) in req.head.fields() {
        if !dropped_from_request(known)
            && !has_underscore(known, name)
            && !tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
        {
            push_field(&mut out, name, value);
        }
    }
    let ip = origin.ip.as_bytes();
    let proto: &[u8] = if origin.tls { b"https" } else { b"http" };
    push_field(&mut out, b"X-Forwarded-For", ip);
    push_field(&mut out, b"X-Forwarded-Proto", proto);
    push_field(&mut out, b"X-Forwarded-Host", req.authority().as_bytes());
    // RFC 7239 §6: an IPv6 address is bracketed, and then quoted.
    if origin.v6 {
        out.extend_from_slice(b"Forwarded: for=\"[");
        out.extend_from_slice(ip);
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(b"Forwarded: for=");
        out.extend_from_slice(ip);
    }
    out.extend_from_slice(b";host=\"");
    out.extend_from_slice(req.authority().as_bytes());
    out.extend_from_slice(b"\";proto=");
    out.extend_from_slice(proto);
    out.extend_from_slice(b"\r\n");
    push_framing(&mut out, framing);
    if req.upgrade {
        for value in req.head.values(Name::Upgrade) {
            push_field(&mut out, b"Upgrade", value);
        }
        push_field(&mut out, b"Connection", b"upgrade");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The response head the client receives. `close` says we close the
/// connection after it; `client` is the client's HTTP version.
pub fn response_head(
    resp: &ResponseHead,
    framing: OutFraming,
    close: bool,
    client: Version,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(resp.head.first_line().len() + 512);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(&mut out, u64::from(resp.status));
    out.push(b' ');
    out.extend_from_slice(resp.reason());
    out.extend_from_slice(b"\r\n");
    let tokens = connection_tokens(&resp.head);
    let switching = resp.status == 101;
    let mut length_sent = false;
    for (known, name, value) in resp.head.fields() {
        let is_length = known == Name::ContentLength;
        let keep = if is_length {
            // Only a body-less response keeps the backend's own length
            // (a HEAD's answer, a 304); once. A 204 may not have one
            // (RFC 9110 §8.6): a client that trusted it would wait for a
            // body that never comes.
            framing == OutFraming::None
                && resp.status != 204
                && !std::mem::replace(&mut length_sent, true)
        } else {
            !is_hop_by_hop(known) && !tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
        };
        if keep {
            push_field(&mut out, name, value);
        }
    }
    push_framing(&mut out, framing);
    if switching {
        for value in resp.head.values(Name::Upgrade) {
            push_field(&mut out, b"Upgrade", value);
        }
        push_field(&mut out, b"Connection", b"upgrade");
    } else if close {
        push_field(&mut out, b"Connection", b"close");
    } else if client == Version::Http10 {
        push_field(&mut out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::balancer::scanner::TEST_LIMITS as LIMITS;

    #[test]
    fn request_is_rewritten() {
        let raw = "GET http://a.example.com/p HTTP/1.1\r\nHost: ignored\r\nConnection: keep-alive, X-Secret\r\n\
                   X-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\nTE: trailers\r\n\
                   X_Forwarded_For: 5.5.5.5\r\nX_Api_Key: k\r\n\r\n";
        let req = RequestHead::parse(raw.as_bytes(), &LIMITS).expect("valid");
        let origin = Origin::new("10.1.2.3".parse().expect("ip"), true);
        let out = String::from_utf8(request_head(&req, &origin, OutFraming::None)).expect("utf-8");
        assert_eq!(
            out,
            "GET /p HTTP/1.1\r\nHost: a.example.com\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: a.example.com\r\n\
             Forwarded: for=10.1.2.3;host=\"a.example.com\";proto=https\r\n\r\n"
        );
    }

    #[test]
    fn numbers_as_display_writes_them_and_ipv6_bracketed() {
        for n in [0, 7, 10, 404, 65535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n";
        let req = RequestHead::parse(raw.as_bytes(), &LIMITS).expect("valid");
        let origin = Origin::new("2001:db8::1".parse().expect("ip"), false);
        let out = request_head(&req, &origin, OutFraming::Length(12));
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 2001:db8::1\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: a\r\nForwarded: for=\"[2001:db8::1]\";host=\"a\";proto=http\r\n\
             Content-Length: 12\r\n\r\n"
        );
    }

    #[test]
    fn only_a_204_loses_its_length() {
        for (status, method, kept) in [
            ("204 No Content", "GET", false),
            ("304 Not Modified", "GET", true),
            ("200 OK", "HEAD", true),
        ] {
            let raw = format!("HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n");
            let resp =
                ResponseHead::parse(raw.as_bytes(), &LIMITS, method.as_bytes()).expect("valid");
            let out = String::from_utf8(response_head(
                &resp,
                OutFraming::None,
                false,
                Version::Http11,
            ))
            .expect("utf-8");
            assert_eq!(out.contains("Content-Length: 5\r\n"), kept, "{out}");
        }
    }

    #[test]
    fn response_is_rewritten() {
        let raw =
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nServer: g\r\n\r\n";
        let resp = ResponseHead::parse(raw.as_bytes(), &LIMITS, b"GET").expect("valid");
        let out = response_head(&resp, OutFraming::Length(2), false, Version::Http10);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "HTTP/1.1 200 OK\r\nServer: g\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}
