//! The heads the balancer sends on: the request head for a backend (origin
//! form, HTTP/1.1, hop-by-hop fields removed, `X-Forwarded-*` and
//! `Forwarded` set by us, our own framing) and the response head for the
//! client. Pure functions from parsed heads to bytes; no I/O.

use super::head::{Head, Version};
use super::request::RequestHead;
use super::response::ResponseHead;
use std::io::Write;
use std::net::IpAddr;

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus those the balancer always writes itself.
fn dropped_from_request(name: &[u8]) -> bool {
    is_hop_by_hop(name)
        || [
            &b"host"[..],
            b"content-length",
            b"expect",
            b"x-forwarded-for",
            b"x-forwarded-proto",
            b"x-forwarded-host",
            b"forwarded",
        ]
        .iter()
        .any(|d| name.eq_ignore_ascii_case(d))
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    ]
    .iter()
    .any(|d| name.eq_ignore_ascii_case(d))
}

/// The field names a `Connection` field lists: dropped too.
fn connection_tokens(head: &Head) -> Vec<&[u8]> {
    head.values("connection")
        .flat_map(super::fields::list_items)
        .collect()
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

/// Where the request came from, for the forwarding fields.
pub struct Origin {
    pub ip: IpAddr,
    pub tls: bool,
}

/// The request head a backend receives.
pub fn request_head(req: &RequestHead, origin: &Origin, framing: OutFraming) -> Vec<u8> {
    let mut out = Vec::with_capacity(req.head.first_line().len() + 512);
    out.extend_from_slice(req.method());
    out.push(b' ');
    out.extend_from_slice(req.path().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(&mut out, b"Host", req.authority.as_bytes());
    let tokens = connection_tokens(&req.head);
    for (name, value) in req.head.fields() {
        if !dropped_from_request(name) && !tokens.iter().any(|t| t.eq_ignore_ascii_case(name)) {
            push_field(&mut out, name, value);
        }
    }
    // Written in place: no temporary strings on the request path.
    let ip = origin.ip;
    let proto = if origin.tls { "https" } else { "http" };
    let _ = write!(
        out,
        "X-Forwarded-For: {ip}\r\nX-Forwarded-Proto: {proto}\r\n"
    );
    push_field(&mut out, b"X-Forwarded-Host", req.authority.as_bytes());
    let _ = match ip {
        IpAddr::V4(_) => write!(out, "Forwarded: for={ip}"),
        IpAddr::V6(_) => write!(out, "Forwarded: for=\"[{ip}]\""),
    };
    let _ = write!(out, ";host=\"{}\";proto={proto}\r\n", req.authority);
    match framing {
        OutFraming::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        OutFraming::Chunked => push_field(&mut out, b"Transfer-Encoding", b"chunked"),
        OutFraming::None | OutFraming::Close => {}
    }
    if req.upgrade {
        for value in req.head.values("upgrade") {
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
    let _ = write!(out, "HTTP/1.1 {} ", resp.status);
    out.extend_from_slice(resp.reason());
    out.extend_from_slice(b"\r\n");
    let tokens = connection_tokens(&resp.head);
    let switching = resp.status == 101;
    let mut length_sent = false;
    for (name, value) in resp.head.fields() {
        let is_length = name.eq_ignore_ascii_case(b"content-length");
        let keep = if is_length {
            // Only a body-less response keeps the backend's own length
            // (a HEAD's answer); once.
            framing == OutFraming::None && !std::mem::replace(&mut length_sent, true)
        } else {
            !is_hop_by_hop(name) && !tokens.iter().any(|t| t.eq_ignore_ascii_case(name))
        };
        if keep {
            push_field(&mut out, name, value);
        }
    }
    match framing {
        OutFraming::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        OutFraming::Chunked => push_field(&mut out, b"Transfer-Encoding", b"chunked"),
        OutFraming::None | OutFraming::Close => {}
    }
    if switching {
        for value in resp.head.values("upgrade") {
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
                   X-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\nTE: trailers\r\n\r\n";
        let req = RequestHead::parse(raw.as_bytes(), &LIMITS).expect("valid");
        let origin = Origin {
            ip: "10.1.2.3".parse().expect("ip"),
            tls: true,
        };
        let out = String::from_utf8(request_head(&req, &origin, OutFraming::None)).expect("utf-8");
        assert_eq!(
            out,
            "GET /p HTTP/1.1\r\nHost: a.example.com\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: a.example.com\r\n\
             Forwarded: for=10.1.2.3;host=\"a.example.com\";proto=https\r\n\r\n"
        );
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
