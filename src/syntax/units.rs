//! Units of durations and sizes as people write them, for help lines: the
//! words other tools take (`30min`, `1hr`, `20mb`, `2G`) to the language's
//! own, a fraction (`1.5GB`) to the whole amount of a smaller unit
//! (`1536MB`), and an amount of milliseconds or bytes back to the largest
//! unit that writes it whole (`90s`, `20MB`), for messages about bounds.

use super::ast::{DurationUnit, SizeUnit};

/// Whether a unit measures time or bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Duration,
    Size,
}

impl Measure {
    /// The units and their factors (milliseconds or bytes), smallest first.
    fn units(self) -> Vec<(&'static str, u64)> {
        match self {
            Measure::Duration => DurationUnit::ALL.iter().map(|(s, _, f)| (*s, *f)).collect(),
            // The binary units' `KiB` spellings are the same factors again.
            Measure::Size => SizeUnit::ALL[..5]
                .iter()
                .map(|(s, _, f)| (*s, *f))
                .collect(),
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Measure::Duration => "durations take ms, s, m, h, d and w",
            Measure::Size => "sizes take B, KB, MB, GB and TB (1KB = 1024 bytes)",
        }
    }
}

/// The language's unit (and its measure) for a unit another tool or a
/// person would write: `min` is `m`, `hrs` is `h`, `mb` is `MB`, `G` is `GB`.
/// Lowercase `m` stays minutes, as the language has it; `M` is megabytes.
pub fn alias(unit: &str) -> Option<(&'static str, Measure)> {
    let duration = match unit.to_ascii_lowercase().as_str() {
        "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => Some("ms"),
        "sec" | "secs" | "second" | "seconds" => Some("s"),
        "min" | "mins" | "minute" | "minutes" => Some("m"),
        "hr" | "hrs" | "hour" | "hours" => Some("h"),
        "day" | "days" => Some("d"),
        "wk" | "wks" | "week" | "weeks" => Some("w"),
        _ => None,
    };
    if let Some(unit) = duration {
        return Some((unit, Measure::Duration));
    }
    let size = match unit {
        "M" => Some("MB"),
        "K" | "k" => Some("KB"),
        "G" | "g" => Some("GB"),
        "T" | "t" => Some("TB"),
        "b" => Some("B"),
        _ => match unit.to_ascii_lowercase().as_str() {
            "byte" | "bytes" => Some("B"),
            "kb" | "kib" | "kbytes" => Some("KB"),
            "mb" | "mib" | "mbytes" => Some("MB"),
            "gb" | "gib" | "gbytes" => Some("GB"),
            "tb" | "tib" | "tbytes" => Some("TB"),
            _ => None,
        },
    };
    size.map(|unit| (unit, Measure::Size))
}

/// The language's own unit `unit` and its factor, or an alias's.
fn factor(unit: &str) -> Option<(&'static str, Measure, u64)> {
    for measure in [Measure::Duration, Measure::Size] {
        if let Some((name, f)) = measure.units().into_iter().find(|(u, _)| *u == unit) {
            return Some((name, measure, f));
        }
    }
    let (name, measure) = alias(unit)?;
    let f = measure.units().into_iter().find(|(u, _)| *u == name)?.1;
    Some((name, measure, f))
}

/// `1.5GB` as a whole amount: `1536MB`; `0.5s`: `500ms`. `whole` and
/// `fraction` are the digits around the dot. The amount is written in the
/// largest unit that holds it whole, else rounded to the smallest unit.
/// `None` when `unit` is no unit at all.
pub fn whole(whole: &str, fraction: &str, unit: &str) -> Option<String> {
    let (_, measure, f) = factor(unit)?;
    let digits = fraction.len().min(18);
    let scale = 10u128.pow(u32::try_from(digits).ok()?);
    let fraction: u128 = fraction[..digits].parse().ok()?;
    let whole: u128 = whole.parse().ok()?;
    // The amount in the smallest unit, times `scale`.
    let scaled = (whole * scale + fraction).checked_mul(u128::from(f))?;
    let units = measure.units();
    for (name, factor) in units.iter().rev() {
        let per = u128::from(*factor) * scale;
        if scaled % per == 0 && u128::from(*factor) <= u128::from(f) {
            return Some(format!("{}{name}", scaled / per));
        }
    }
    let (name, _) = units[0];
    Some(format!("{}{name}", (scaled + scale / 2) / scale))
}

/// An amount of milliseconds or bytes in the largest unit that writes it
/// whole: `90000` ms is `90s`, `20971520` bytes `20MB`.
pub fn show(amount: u64, measure: Measure) -> String {
    let units = measure.units();
    if amount == 0 {
        // As people write nothing: `0s`, `0B`.
        return format!("0{}", units[usize::from(measure == Measure::Duration)].0);
    }
    let (name, factor) = (units.iter().rev())
        .find(|(_, f)| amount % f == 0 && amount >= *f)
        .copied()
        .unwrap_or(units[0]);
    format!("{}{name}", amount / factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_keep_minutes_and_megabytes_apart() {
        assert_eq!(alias("min"), Some(("m", Measure::Duration)));
        assert_eq!(alias("Hours"), Some(("h", Measure::Duration)));
        assert_eq!(alias("mb"), Some(("MB", Measure::Size)));
        assert_eq!(alias("M"), Some(("MB", Measure::Size)));
        assert_eq!(alias("m"), None, "`m` is the language's minutes");
        assert_eq!(alias("parsecs"), None);
    }

    #[test]
    fn fractions_become_whole_amounts_of_a_smaller_unit() {
        assert_eq!(whole("1", "5", "GB").as_deref(), Some("1536MB"));
        assert_eq!(whole("1", "5", "h").as_deref(), Some("90m"));
        assert_eq!(whole("0", "5", "s").as_deref(), Some("500ms"));
        assert_eq!(whole("2", "0", "MB").as_deref(), Some("2MB"));
        assert_eq!(whole("1", "5", "gb").as_deref(), Some("1536MB"));
        assert_eq!(whole("1", "1", "GB").as_deref(), Some("1181116006B"));
        assert_eq!(whole("1", "5", "furlongs"), None);
    }

    #[test]
    fn amounts_show_in_the_largest_whole_unit() {
        assert_eq!(show(90_000, Measure::Duration), "90s");
        assert_eq!(show(604_800_000 * 52, Measure::Duration), "52w");
        assert_eq!(show(20 << 20, Measure::Size), "20MB");
        assert_eq!(show(1, Measure::Size), "1B");
        assert_eq!(show(0, Measure::Size), "0B");
        assert_eq!(show(0, Measure::Duration), "0s");
    }
}
