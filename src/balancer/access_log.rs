//! `AccessLog`: one line per request to a file, written by a thread of its
//! own so a slow disk never stalls a request: the request path formats a
//! line and hands it over a bounded channel (a full channel drops the line
//! and counts it). SIGHUP reopens the file (for log rotation). Lines look
//! like
//! `2026-11-28T00:01:02.345Z 127.0.0.1:50312 blog "GET /x HTTP/1.1" 200 1234 0.001234 127.0.0.1:9001`
//! (time, client, app, request line, status, response body bytes, seconds,
//! backend or `-`). It never decides what is logged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

enum Msg {
    Line(String),
    Reopen,
}

pub struct AccessLog {
    path: PathBuf,
    tx: SyncSender<Msg>,
}

impl AccessLog {
    /// Opens (appends to) the file and starts its writer thread.
    pub fn open(path: &Path) -> Result<AccessLog, String> {
        let file = open(path)?;
        let (tx, rx) = sync_channel::<Msg>(8192);
        let owned = path.to_owned();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(Msg::Line(line)) => {
                            let _ = out.write_all(line.as_bytes());
                        }
                        Ok(Msg::Reopen) => match open(&owned) {
                            Ok(f) => {
                                let _ = out.flush();
                                out = std::io::BufWriter::new(f);
                            }
                            Err(e) => tracing::error!("{e}"),
                        },
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = out.flush();
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            let _ = out.flush();
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        Ok(AccessLog {
            path: path.to_owned(),
            tx,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a line; false if the writer fell behind and it was dropped.
    pub fn write(&self, line: String) -> bool {
        !matches!(
            self.tx.try_send(Msg::Line(line)),
            Err(TrySendError::Full(_))
        )
    }

    pub fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen);
    }
}

fn open(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("access_log.path: cannot open {}: {e}", path.display()))
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = crate::data::stamp::civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_827_723_456);
        assert_eq!(timestamp(t), "2026-11-28T01:02:03.456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
