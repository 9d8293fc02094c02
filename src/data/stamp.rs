//! A snapshot's name: the UTC second it was taken, as `2026-12-07T101500Z`
//! (sorts as it reads, and has no `:` for paths and shells), and the
//! calendar periods retention counts in (hour, day, ISO week, month).
//! Civil dates from days since 1970 by Howard Hinnant's algorithms; pure.

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(pub i64);

/// `(year, month, day)` of a day counted from 1970-01-01.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to `year-month-day`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Stamp {
    /// Now, to the second.
    #[must_use]
    pub fn now() -> Stamp {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Stamp(i64::try_from(seconds).unwrap_or(i64::MAX))
    }

    fn days(self) -> i64 {
        self.0.div_euclid(86_400)
    }

    /// `(hour, minute, second)` of the day.
    fn clock(self) -> (i64, i64, i64) {
        let s = self.0.rem_euclid(86_400);
        (s / 3600, s / 60 % 60, s % 60)
    }

    /// Reads `2026-12-07T101500Z`; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Stamp> {
        let b = text.as_bytes();
        let shape = b.len() == 18
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[17] == b'Z'
            && [0..4, 5..7, 8..10, 11..17]
                .iter()
                .all(|r| b[r.clone()].iter().all(u8::is_ascii_digit));
        if !shape {
            return None;
        }
        let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().ok();
        let (year, month, day) = (n(0..4)?, n(5..7)?, n(8..10)?);
        let (hour, minute, second) = (n(11..13)?, n(13..15)?, n(15..17)?);
        let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
        let day = u32::try_from(day).ok().filter(|d| (1..=31).contains(d))?;
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        // 2026-02-31 would name March 3rd: refuse it.
        if civil(days) != (year, month, day) {
            return None;
        }
        Some(Stamp(days * 86_400 + hour * 3600 + minute * 60 + second))
    }

    /// The hour, day, ISO week or month this stamp falls in, as a pair
    /// that is equal for stamps of the same period.
    #[must_use]
    pub fn period(self, every: Period) -> (i64, i64) {
        let (year, month, _) = civil(self.days());
        match every {
            Period::Hour => (self.days(), self.clock().0),
            Period::Day => (self.days(), 0),
            Period::Week => {
                // ISO 8601: the week belongs to the year of its Thursday.
                let weekday = (self.days() + 3).rem_euclid(7); // Monday = 0
                let thursday = self.days() - weekday + 3;
                let (iso_year, _, _) = civil(thursday);
                let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
                (iso_year, week)
            }
            Period::Month => (year, i64::from(month)),
        }
    }

    /// Seconds from this stamp to `later` (0 when `later` is earlier).
    #[must_use]
    pub fn age_at(self, later: Stamp) -> u64 {
        u64::try_from(later.0 - self.0).unwrap_or(0)
    }
}

/// The calendar periods `keep { hourly daily weekly monthly }` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (year, month, day) = civil(self.days());
        let (hour, minute, second) = self.clock();
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{hour:02}{minute:02}{second:02}Z"
        )
    }
}

/// `90` -> `1m`, `7200` -> `2h`, `200000` -> `2d`: an age for a listing.
#[must_use]
pub fn age_words(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_and_print_as_dates_do() {
        // `date -u -d 2026-12-06T01:15:00Z +%s`
        let s = Stamp::parse("2026-12-06T011500Z").expect("a stamp");
        assert_eq!(s.0, 1_796_519_700);
        assert_eq!(s.to_string(), "2026-12-06T011500Z");
        assert_eq!(Stamp(0).to_string(), "1970-01-01T000000Z");
        assert_eq!(Stamp(951_782_400).to_string(), "2000-02-29T000000Z");
        for bad in [
            "2026-12-06T01150Z",
            "2026-13-06T011500Z",
            "2026-02-30T011500Z",
            "2026-12-06T241500Z",
            "2026-12-06 011500Z",
            "latest",
            "+026-12-06T011500Z",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
    }

    /// ISO weeks as `date +%G-W%V` gives them, across year ends.
    #[test]
    fn iso_weeks_belong_to_the_year_of_their_thursday() {
        let week = |s: &str| Stamp::parse(s).expect("a stamp").period(Period::Week);
        assert_eq!(week("2026-12-31T120000Z"), (2026, 53));
        assert_eq!(week("2027-01-03T120000Z"), (2026, 53));
        assert_eq!(week("2027-01-04T000000Z"), (2027, 1));
        assert_eq!(week("2024-12-30T000000Z"), (2025, 1));
        assert_eq!(week("2026-12-07T000000Z"), (2026, 50));
        let month = |s: &str| Stamp::parse(s).expect("a stamp").period(Period::Month);
        assert_eq!(month("2026-12-07T000000Z"), (2026, 12));
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(age_words(59), "59s");
        assert_eq!(age_words(600), "10m");
        assert_eq!(age_words(36_000), "10h");
        assert_eq!(age_words(864_000), "10d");
    }
}
