//! `RequestHead`: a client's request head parsed strictly and checked for
//! every ambiguity a lenient backend could read differently from us (request
//! smuggling): Content-Length with Transfer-Encoding, differing or malformed
//! lengths, any transfer coding but a lone `chunked`, a missing or doubled
//! Host. Why hand-written: hyper's parser (httparse) accepts bare LF line
//! endings and is built to be lenient; the balancer is the shield in front of
//! gunicorn, so it accepts only what RFC 9112 allows and refuses the rest
//! with 400 before a byte reaches a backend. It never routes or forwards.

use super::fields::is_token;
use super::head::{Framing, Head, Name, Version};
use super::refusal::Refusal;
use super::scanner::HeadLimits;
use std::ops::Range;

/// A request head that passed every check.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub head: Head,
    method: Range<usize>,
    /// The path, the authority and the host (see their methods) one after
    /// the other: one allocation per request instead of three.
    texts: String,
    /// Where the authority and the host start in `texts`.
    authority_at: usize,
    host_at: usize,
    pub version: Version,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// A WebSocket handshake: `Upgrade: websocket` with `Connection:
    /// upgrade` on a bodiless HTTP/1.1 GET. Any other upgrade (`h2c` above
    /// all) is ignored, and the request goes on as a plain one: a backend
    /// that switched to another protocol would have the balancer tunnel
    /// requests it never parsed, routed or logged (h2c smuggling).
    pub upgrade: bool,
}

impl RequestHead {
    /// Parses and validates the complete head in `bytes`.
    pub fn parse(bytes: &[u8], limits: &HeadLimits) -> Result<RequestHead, Refusal> {
        let head = Head::parse(bytes, limits)?;
        let line = head.first_line();
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::bad("malformed request line"));
        };
        if !is_token(method) {
            return Err(Refusal::bad("malformed method"));
        }
        let version = Version::parse(version)?;
        if target.is_empty() || !target.iter().all(|b| (b'!'..=b'~').contains(b)) {
            return Err(Refusal::bad("malformed request target"));
        }
        if method == b"CONNECT" {
            return Err(Refusal::new(405, "CONNECT is not proxied"));
        }
        let method = 0..method.len();
        let target =
            std::str::from_utf8(target).map_err(|_| Refusal::bad("malformed request target"))?;
        let (path, target_authority) = split_target(target, &line[method.clone()])?;

        let framing = head.framing(version)?;
        let authority = authority(&head, target_authority, version)?;
        let host = host_name(authority)?;
        let mut texts = String::with_capacity(1 + path.len() + authority.len() + host.len());
        // `http://a?q` has an empty path: origin-form needs its "/"
        // (RFC 9112 §3.2.1), or the backend would read `GET ?q`.
        if path.starts_with('?') {
            texts.push('/');
        }
        texts.push_str(path);
        let authority_at = texts.len();
        texts.push_str(authority);
        let host_at = texts.len();
        texts.push_str(host);
        texts[host_at..].make_ascii_lowercase();
        let options = head.connection();
        let keep_alive = match version {
            Version::Http11 => !options.close,
            Version::Http10 => options.keep_alive && !options.close,
        };
        // Every Expect field must say 100-continue (another one would be
        // dropped on the way unheard); an HTTP/1.0 client cannot expect
        // 100 Continue (RFC 9110 §10.1.1).
        let mut expect_continue = false;
        for v in head.values(Name::Expect) {
            if !v.eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal::new(417, "unsupported expectation"));
            }
            expect_continue = version == Version::Http11;
        }
        let upgrade = options.upgrade
            && version == Version::Http11
            && &line[method.clone()] == b"GET"
            && framing == Framing::None
            && is_websocket(head.values(Name::Upgrade));
        Ok(RequestHead {
            method,
            texts,
            authority_at,
            host_at,
            version,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
            head,
        })
    }

    pub fn method(&self) -> &[u8] {
        &self.head.first_line()[self.method.clone()]
    }

    /// What the backend receives as the target: origin-form.
    pub fn path(&self) -> &str {
        &self.texts[..self.authority_at]
    }

    /// The authority (`name[:port]`) as the client gave it.
    pub fn authority(&self) -> &str {
        &self.texts[self.authority_at..self.host_at]
    }

    /// The host name alone, lowercased, for routing.
    pub fn host(&self) -> &str {
        &self.texts[self.host_at..]
    }

    /// GET, HEAD and OPTIONS: safe to send again to another backend.
    pub fn idempotent(&self) -> bool {
        matches!(self.method(), b"GET" | b"HEAD" | b"OPTIONS")
    }
}

/// One `Upgrade` field that names only `websocket`.
fn is_websocket<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> bool {
    let first = values.next();
    values.next().is_none() && first.is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"))
}

/// Origin-form stays as it is; absolute-form gives its authority (which
/// then overrides Host, RFC 9112 §3.2.2) and its path; asterisk-form only
/// with OPTIONS.
fn split_target<'a>(target: &'a str, method: &[u8]) -> Result<(&'a str, Option<&'a str>), Refusal> {
    if target.starts_with('/') {
        return Ok((target, None));
    }
    if target == "*" && method == b"OPTIONS" {
        return Ok((target, None));
    }
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            target
                .get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &target[scheme.len()..])
        })
        .ok_or(Refusal::bad("malformed request target"))?;
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') {
        return Err(Refusal::bad("malformed authority in request target"));
    }
    Ok((if path.is_empty() { "/" } else { path }, Some(authority)))
}

/// The request's authority: the absolute-form target's, else the one Host.
fn authority<'a>(
    head: &'a Head,
    from_target: Option<&'a str>,
    version: Version,
) -> Result<&'a str, Refusal> {
    let mut hosts = head.values(Name::Host);
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::bad("more than one Host field"));
    }
    if let Some(authority) = from_target {
        return Ok(authority);
    }
    match host {
        Some(h) => std::str::from_utf8(h).map_err(|_| Refusal::bad("malformed Host")),
        None if version == Version::Http10 => Ok(""),
        None => Err(Refusal::bad("missing Host")),
    }
}

/// The host name for routing (lowercased by the caller): without port or
/// trailing dot; only the characters a DNS name or an IP literal may hold.
fn host_name(authority: &str) -> Result<&str, Refusal> {
    let bytes = authority.as_bytes();
    let name_end = if bytes.first() == Some(&b'[') {
        1 + bytes
            .iter()
            .position(|&b| b == b']')
            .ok_or(Refusal::bad("malformed Host"))?
    } else {
        bytes.iter().position(|&b| b == b':').unwrap_or(bytes.len())
    };
    check_port(&authority[name_end..])?;
    let name = &authority[..name_end];
    // No early exit: a host is short and valid, a table load per byte
    // beats a chain of comparisons per byte.
    if !name
        .bytes()
        .fold(true, |ok, b| ok & HOST_BYTE[usize::from(b)])
    {
        return Err(Refusal::bad("malformed Host"));
    }
    Ok(name.trim_end_matches('.'))
}

/// The bytes a host name may hold: letters, digits, `-`, `.`, `_`, and the
/// brackets and colons of an IPv6 literal.
static HOST_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'[' | b']' | b':');
        b += 1;
    }
    table
};

fn check_port(port: &str) -> Result<(), Refusal> {
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(Refusal::bad("malformed Host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::balancer::scanner::TEST_LIMITS as LIMITS;

    fn parse(head: &str) -> Result<RequestHead, Refusal> {
        RequestHead::parse(head.as_bytes(), &LIMITS)
    }

    #[test]
    fn plain_get() {
        let r = parse("GET /a?b HTTP/1.1\r\nHost: Blog.Example.com:8080\r\n\r\n").expect("valid");
        assert_eq!(r.method(), b"GET");
        assert_eq!(r.path(), "/a?b");
        assert_eq!(r.host(), "blog.example.com");
        assert_eq!(r.authority(), "Blog.Example.com:8080");
        assert_eq!(r.framing, Framing::None);
        assert!(r.keep_alive && !r.upgrade && !r.expect_continue);
    }

    #[test]
    fn host_names() {
        for (authority, host) in [
            ("a.example.com", Some("a.example.com")),
            ("a.example.com.:8080", Some("a.example.com")),
            ("under_score-1", Some("under_score-1")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("[::1]:8080", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("", Some("")),
            ("[::1", None),
            ("[::1]x", None),
            ("a:", Some("a")), // an empty port is allowed (RFC 3986 §3.2.3)
            ("a:123456", None),
            ("a:8o", None),
            ("a b", None),
            ("a/b", None),
            ("a@b", None),
        ] {
            assert_eq!(host_name(authority).ok(), host, "{authority:?}");
        }
        for b in 0..=127u8 {
            let allowed = b.is_ascii_alphanumeric() || b"-._[]:".contains(&b);
            let authority = format!("a{}b", char::from(b));
            // A colon starts the port: `b` is no port.
            let expected = allowed && b != b':';
            assert_eq!(host_name(&authority).is_ok(), expected, "{b}");
        }
    }

    #[test]
    fn only_a_websocket_handshake_is_an_upgrade() {
        let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
        for (head, upgrade) in [
            (format!("GET /ws HTTP/1.1\r\nHost: a\r\n{ws}\r\n"), true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: WebSocket\r\n\r\n".to_owned(), true),
            // h2c: the backend would speak HTTP/2 through our tunnel.
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n".to_owned(), false),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n".to_owned(), false),
            (format!("GET / HTTP/1.1\r\nHost: a\r\n{ws}Upgrade: h2c\r\n\r\n"), false),
            ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n".to_owned(), false),
            (format!("GET / HTTP/1.0\r\nHost: a\r\n{ws}\r\n"), false),
            (format!("POST / HTTP/1.1\r\nHost: a\r\n{ws}\r\n"), false),
            (format!("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n{ws}\r\n"), false),
        ] {
            assert_eq!(parse(&head).expect("valid").upgrade, upgrade, "{head:?}");
        }
    }

    #[test]
    fn absolute_form_overrides_host() {
        let r = parse("GET http://b.example.com HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            .expect("valid");
        assert_eq!(r.host(), "b.example.com");
        assert_eq!(r.path(), "/");
    }

    #[test]
    fn an_empty_absolute_path_becomes_a_slash() {
        for (target, path) in [
            ("http://a.example.com", "/"),
            ("http://a.example.com?q=1", "/?q=1"),
            ("http://a.example.com/?q=1", "/?q=1"),
            ("http://a.example.com/p?q", "/p?q"),
        ] {
            let r = parse(&format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")).expect("valid");
            assert_eq!((r.path(), r.host()), (path, "a.example.com"), "{target}");
        }
    }

    #[test]
    fn http10_keep_alive_only_when_asked() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").expect("valid").keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .expect("valid")
                .keep_alive
        );
    }

    #[test]
    fn framings() {
        let r =
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.expect("valid").framing, Framing::Length(5));
        let r = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(r.expect("valid").framing, Framing::Chunked);
    }

    #[test]
    fn refusals() {
        for (head, status) in [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
            ("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            ("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: magic\r\n\r\n", 417),
        ] {
            assert_eq!(parse(head).map(|_| ()).map_err(|r| r.status), Err(status), "{head:?}");
        }
    }
}
