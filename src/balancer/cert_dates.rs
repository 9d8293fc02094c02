//! When an X.509 certificate is valid: the two dates of its `validity`
//! (RFC 5280 §4.1.2.5), read from its DER. rustls and webpki check them
//! during a handshake but do not hand them out, and a certificate parser
//! crate would be a dozen dependencies for two fields: this walks the few
//! DER elements in front of them. `sitec check` warns of a certificate
//! that has expired or soon will (E276), the balancer logs it when it
//! loads one, and its `/metrics` shows each one's expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long before it expires a certificate is warned of (E276, and the
/// balancer's log when it loads one): renewals run well before (certbot's
/// at 30 days left, a third of a 45-day certificate's life at 15), so one
/// this close has missed its renewal.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);

/// Where a certificate valid from `not_before` to `not_after` stands at a
/// given time: what E276 and the balancer's log both go by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Before its `not_before`.
    NotYet,
    /// Valid for `EXPIRY_WARNING` or more.
    Valid,
    /// Valid for less than `EXPIRY_WARNING` more: this long.
    ExpiresSoon(Duration),
    /// At or past its `not_after`.
    Expired,
}

pub fn standing(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Standing {
    match not_after.duration_since(now) {
        Err(_) | Ok(Duration::ZERO) => Standing::Expired,
        Ok(_) if now < not_before => Standing::NotYet,
        Ok(left) if left < EXPIRY_WARNING => Standing::ExpiresSoon(left),
        Ok(_) => Standing::Valid,
    }
}

/// The first DER element of `der`: its tag, its contents, and what follows.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`, absent from version 1 certificates.
const VERSION: u8 = 0xa0;

/// `notBefore` and `notAfter` of a DER certificate; `None` if it is not one.
pub fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, then validity.
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, dates, _) = element(rest)? else {
        return None;
    };
    let (tag, not_before, rest) = element(dates)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), the two forms RFC 5280 allows.
fn time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let digits = match tag {
        UTC_TIME => 12,
        GENERALIZED_TIME => 14,
        _ => return None,
    };
    if text.len() != digits + 1 || text[digits] != b'Z' {
        return None;
    }
    let number = |at: usize, len: usize| -> Option<i64> {
        let part = std::str::from_utf8(text.get(at..at + len)?).ok()?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, at) = if tag == UTC_TIME {
        let yy = number(0, 2)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
    } else {
        (number(0, 4)?, 4)
    };
    let (month, day) = (number(at, 2)?, number(at + 2, 2)?);
    let (hour, minute, second) = (number(at + 4, 2)?, number(at + 6, 2)?, number(at + 8, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let since_epoch = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(since_epoch)
    } else {
        UNIX_EPOCH.checked_sub(since_epoch)
    }
}

/// Days since 1970-01-01 of a date (Howard Hinnant's algorithm, the
/// inverse of the one `access_log::timestamp` uses).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date part of a time, `YYYY-MM-DD` (UTC).
pub fn date(t: SystemTime) -> String {
    let mut stamp = super::access_log::timestamp(t);
    stamp.truncate(10);
    stamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    fn der(path: &str) -> Vec<u8> {
        let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
        CertificateDer::from_pem_file(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .to_vec()
    }

    fn stamp(t: SystemTime) -> String {
        super::super::access_log::timestamp(t)
    }

    #[test]
    fn reads_the_dates_openssl_shows() {
        // openssl x509 -noout -dates -in examples/tls/blog.localhost.pem
        let (from, until) = validity(&der("examples/tls/blog.localhost.pem")).expect("dates");
        assert_eq!(stamp(from), "2026-12-04T19:19:14.000Z");
        assert_eq!(stamp(until), "2046-11-29T19:19:14.000Z");
        let (from, until) = validity(&der("tests/balancer/tls/expired.pem")).expect("dates");
        assert_eq!(stamp(from), "2020-01-01T00:00:00.000Z");
        assert_eq!(stamp(until), "2020-02-01T00:00:00.000Z");
    }

    #[test]
    fn both_time_forms() {
        let utc = time(UTC_TIME, b"491231235959Z").expect("utc");
        assert_eq!(stamp(utc), "2049-12-31T23:59:59.000Z");
        let before_1970 = time(UTC_TIME, b"500101000000Z").expect("1950");
        assert_eq!(
            UNIX_EPOCH.duration_since(before_1970).ok(),
            Some(Duration::from_secs(7305 * 86_400))
        );
        let generalized = time(GENERALIZED_TIME, b"20500101000000Z").expect("generalized");
        assert_eq!(stamp(generalized), "2050-01-01T00:00:00.000Z");
        assert_eq!(date(generalized), "2050-01-01");
        let leap = time(GENERALIZED_TIME, b"20240229120000Z").expect("leap day");
        assert_eq!(stamp(leap), "2024-02-29T12:00:00.000Z");
    }

    #[test]
    fn what_is_not_a_certificate_has_no_dates() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(b"\x30\x82\xff"), None);
        assert_eq!(validity(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
        assert_eq!(time(UTC_TIME, b"2401011200Z"), None);
        assert_eq!(time(UTC_TIME, b"241301120000Z"), None);
        assert_eq!(time(UTC_TIME, b"24010112000+Z"), None);
        assert_eq!(time(0x04, b"240101120000Z"), None);
        // Every truncation of a real certificate is refused, never a panic.
        let full = der("tests/balancer/tls/a.pem");
        assert!(validity(&full).is_some());
        for len in 0..full.len() {
            assert_eq!(validity(&full[..len]), None, "{len} bytes");
        }
    }
}
