//! The little of Redis's protocol (RESP2) that `status` needs: a command
//! written as an array of bulk strings, and replies read back, bounded in
//! depth and length (the server is local, but its answer is still input).
//! Never a connection of its own.

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk string.
    Bulk(Option<String>),
    Array(Vec<Reply>),
    /// The null array.
    Null,
}

impl Reply {
    /// A simple or bulk string's text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer, or a string holding one (`ROLE` writes a replica's
    /// port and offset as strings).
    pub fn number(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            other => other.text()?.parse().ok(),
        }
    }
}

/// The deepest nesting and the longest array read.
const DEPTH_MAX: usize = 4;
const ITEMS_MAX: usize = 4096;

/// `args` as a RESP command.
pub fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first `n` replies in `buf`, or `None` while they are incomplete.
pub fn replies(buf: &[u8], n: usize) -> Result<Option<Vec<Reply>>, String> {
    let mut found = Vec::new();
    let mut at = 0;
    while found.len() < n {
        match reply(buf, at, 0)? {
            Some((r, next)) => {
                found.push(r);
                at = next;
            }
            None => return Ok(None),
        }
    }
    Ok(Some(found))
}

/// The reply starting at `at`, and where the next one starts.
fn reply(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    let Some((kind, line, next)) = line(buf, at)? else {
        return Ok(None);
    };
    let count = |line: &str| -> Result<i64, String> {
        line.parse().map_err(|_| format!("not a length: {line:?}"))
    };
    Ok(Some(match kind {
        b'+' => (Reply::Simple(line), next),
        b'-' => (Reply::Error(line), next),
        b':' => (Reply::Integer(count(&line)?), next),
        b'$' => match count(&line)? {
            -1 => (Reply::Bulk(None), next),
            len if len >= 0 => {
                let end = next.saturating_add(len as usize);
                if buf.len() < end.saturating_add(2) {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err("a bulk string is not followed by CRLF".into());
                }
                let text = String::from_utf8_lossy(&buf[next..end]).into_owned();
                (Reply::Bulk(Some(text)), end + 2)
            }
            len => return Err(format!("a bulk string of length {len}")),
        },
        b'*' => match count(&line)? {
            -1 => (Reply::Null, next),
            len if (0..=ITEMS_MAX as i64).contains(&len) => {
                if depth == DEPTH_MAX {
                    return Err(format!("replies nested deeper than {DEPTH_MAX}"));
                }
                let mut items = Vec::new();
                let mut at = next;
                for _ in 0..len {
                    let Some((item, after)) = reply(buf, at, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at = after;
                }
                (Reply::Array(items), at)
            }
            len => return Err(format!("an array of {len} items")),
        },
        other => return Err(format!("a reply of unknown kind {:?}", other as char)),
    }))
}

/// The kind byte and the rest of the line at `at`, and where the next
/// line starts; `None` until the line ends.
fn line(buf: &[u8], at: usize) -> Result<Option<(u8, String, usize)>, String> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(end) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[at + 1..at + end]).into_owned();
    Ok(Some((kind, text, at + end + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        assert_eq!(command(&["ROLE"]), b"*1\r\n$4\r\nROLE\r\n");
    }

    #[test]
    fn replies_are_read_whole_or_not_at_all() {
        let primary = b"+OK\r\n*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n";
        let all = replies(primary, 2).expect("valid").expect("complete");
        assert_eq!(all[0], Reply::Simple("OK".into()));
        let Reply::Array(role) = &all[1] else {
            panic!("{all:?}")
        };
        assert_eq!(
            (role[0].text(), role[1].number()),
            (Some("master"), Some(3_129_659))
        );
        for cut in 0..primary.len() {
            assert_eq!(replies(&primary[..cut], 2), Ok(None), "cut at {cut}");
        }
        assert!(replies(b"?what\r\n", 1).is_err());
        assert!(replies(b"*99999999\r\n", 1).is_err());
        assert!(replies(b"$-5\r\n", 1).is_err());
        assert!(replies(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", 1).is_err());
    }
}
