//! Which copies a backup host keeps: `keep { hourly daily weekly monthly }`
//! keeps, for each class, the newest copy of each of the last N periods
//! (hours, days, ISO weeks, months) that have one; a copy kept by any class
//! stays, every other goes. Periods with no copy are not counted, so a
//! backup host that was down for a week keeps as many copies as one that
//! was not. Pure: stamps in, the ones to keep out.

use super::stamp::{Period, Stamp};
use crate::model::Keep;
use std::collections::BTreeSet;

/// The stamps `keep` keeps among `stamps` (in any order).
#[must_use]
pub fn kept(stamps: &[Stamp], keep: &Keep) -> BTreeSet<Stamp> {
    let mut newest_first: Vec<Stamp> = stamps.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.dedup();
    let mut kept = BTreeSet::new();
    for (period, limit) in [
        (Period::Hour, keep.hourly),
        (Period::Day, keep.daily),
        (Period::Week, keep.weekly),
        (Period::Month, keep.monthly),
    ] {
        let mut periods = 0;
        let mut last = None;
        for stamp in &newest_first {
            if periods >= limit {
                break;
            }
            let this = stamp.period(period);
            if last != Some(this) {
                kept.insert(*stamp);
                last = Some(this);
                periods += 1;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(texts: &[&str]) -> Vec<Stamp> {
        texts
            .iter()
            .map(|t| Stamp::parse(t).unwrap_or_else(|| panic!("{t} is a stamp")))
            .collect()
    }

    /// A simulated month: a snapshot every 30 minutes from 2026-11-01
    /// 00:00 to 2026-12-02 23:30 UTC (1,536 of them), kept by
    /// `keep { hourly = 6  daily = 5  weekly = 3  monthly = 3 }`.
    fn a_month() -> Vec<Stamp> {
        let start = Stamp::parse("2026-11-01T000000Z").expect("a stamp").0;
        (0..32 * 48).map(|i| Stamp(start + i * 1800)).collect()
    }

    const A_MONTH_KEEP: Keep = Keep {
        hourly: 6,
        daily: 5,
        weekly: 3,
        monthly: 3,
    };

    /// What that month leaves, worked out by hand: the newest of each of
    /// the last 6 hours (23:30 back to 18:30 on Dec 2); of the last 5 days
    /// (Dec 2 back to Nov 28, each at 23:30); of the last 3 ISO weeks
    /// (W49 is Nov 30 to Dec 6: Dec 2; W48 ends Sunday Nov 29; W47 ends
    /// Nov 22); of the last 3 months that have one (December: Dec 2;
    /// November: Nov 30; October has none, so only two).
    const A_MONTH_KEPT: [&str; 11] = [
        "2026-11-22T233000Z",
        "2026-11-28T233000Z",
        "2026-11-29T233000Z",
        "2026-11-30T233000Z",
        "2026-12-01T233000Z",
        "2026-12-02T183000Z",
        "2026-12-02T193000Z",
        "2026-12-02T203000Z",
        "2026-12-02T213000Z",
        "2026-12-02T223000Z",
        "2026-12-02T233000Z",
    ];

    #[test]
    fn a_month_of_snapshots_keeps_exactly_what_keep_says() {
        let kept: Vec<String> = kept(&a_month(), &A_MONTH_KEEP)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(kept, A_MONTH_KEPT);
    }

    #[test]
    fn periods_without_a_copy_are_not_counted() {
        // Three days, a week apart: `daily = 2` keeps the two newest days
        // that have copies, not "the last two calendar days".
        let sparse = stamps(&[
            "2026-11-01T100000Z",
            "2026-11-01T110000Z",
            "2026-11-08T100000Z",
            "2026-11-15T100000Z",
        ]);
        let keep = Keep {
            hourly: 0,
            daily: 2,
            weekly: 0,
            monthly: 0,
        };
        let kept: Vec<String> = kept(&sparse, &keep)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(kept, ["2026-11-08T100000Z", "2026-11-15T100000Z"]);
        let nothing = Keep::default();
        assert!(super::kept(&sparse, &nothing).is_empty());
    }
}
