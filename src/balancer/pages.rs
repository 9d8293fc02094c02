//! The answers the balancer writes itself: friendly error pages (502, 503,
//! 504, refusals), the HTTPS redirect and `100 Continue`. Pure functions
//! from a status to bytes; they never touch a socket.

use std::fmt::Write;

/// The reason phrase for the statuses the balancer produces itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn explanation(status: u16) -> &'static str {
    match status {
        404 => "No site is served at this address.",
        502 => "The application behind this address did not answer properly. Please try again in a moment.",
        503 => "The application behind this address is not available right now. Please try again in a moment.",
        504 => "The application behind this address took too long to answer. Please try again in a moment.",
        _ => "The request could not be handled.",
    }
}

/// A complete response with a small HTML page; `close` adds
/// `Connection: close`.
pub fn page(status: u16, detail: &str, close: bool) -> Vec<u8> {
    let title = format!("{status} {}", reason(status));
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\n\
         <h1>{title}</h1>\n<p>{}</p>\n<p><small>{}</small></p>\n</body></html>\n",
        explanation(status),
        escape(detail)
    );
    let mut out = format!(
        "HTTP/1.1 {title}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// `301` to the same host and path over https.
pub fn redirect_https(authority: &str, path: &str, close: bool) -> Vec<u8> {
    let host = authority
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h);
    let mut out = format!(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://{host}{path}\r\nContent-Length: 0\r\n"
    );
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn escape(text: &str) -> String {
    text.chars().fold(String::new(), |mut s, c| {
        match c {
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '&' => s.push_str("&amp;"),
            _ => {
                let _ = s.write_char(c);
            }
        }
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_a_complete_response() {
        let p = String::from_utf8(page(502, "a <b>", true)).expect("utf-8");
        let (head, body) = p.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.ends_with("Connection: close"));
        assert!(body.contains("a &lt;b&gt;"));
    }

    #[test]
    fn redirect_drops_the_port() {
        let r = redirect_https("a.example.com:8080", "/x?y", false);
        assert!(String::from_utf8_lossy(&r).contains("Location: https://a.example.com/x?y\r\n"));
    }
}
