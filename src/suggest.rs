//! "Did you mean ...?": the closest known word to a misspelt one.
//!
//! Used by every stage that reports an unknown name. Pure and small.

/// The candidate closest to `word` by edit distance, if it is close enough
/// to be a likely typo (a case-only difference always is).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    let candidates_again: Vec<&'a str> = candidates.into_iter().collect();
    for candidate in candidates_again.iter().copied() {
        if candidate == word {
            continue;
        }
        let distance = if candidate.to_lowercase() == lower {
            0
        } else {
            edit_distance(&lower, &candidate.to_lowercase())
        };
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
        .or_else(|| abbreviated(&lower, candidates_again))
}

/// The one candidate `word` abbreviates: its first letter, then the rest
/// of its letters in order (`cmd` for `command`, `repl` for `replicas`).
fn abbreviated<'a>(word: &str, candidates: Vec<&'a str>) -> Option<&'a str> {
    if word.chars().count() < 2 {
        return None;
    }
    let abbreviates = |candidate: &str| {
        let candidate = candidate.to_lowercase();
        let mut letters = candidate.chars();
        candidate.chars().next() == word.chars().next()
            && word.chars().all(|c| letters.any(|l| l == c))
    };
    let mut found = candidates.into_iter().filter(|c| abbreviates(c));
    let first = found.next()?;
    // Two candidates fit: no guess.
    found.next().is_none().then_some(first)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        assert_eq!(closest("runer", ["runner", "balancer"]), Some("runner"));
        assert_eq!(closest("mb", ["MB", "ms"]), Some("MB"));
        assert_eq!(closest("hsot", ["host", "app"]), Some("host"));
        assert_eq!(closest("zzzz", ["host", "app"]), None);
        assert_eq!(closest("cmd", ["command", "replicas"]), Some("command"));
        assert_eq!(closest("db", ["databases", "domains"]), Some("databases"));
        assert_eq!(closest("rs", ["runners", "replicas"]), None, "two fit");
    }
}
