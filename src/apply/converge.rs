//! The pre-copy convergence rule of the spec: after each pre-dump round,
//! stop when it wrote at most `min_pages`, or more than (1 + `max_growth`)
//! times the previous round; `iterations` bounds the number of rounds.
//!
//! ckptctl's reading adds one stop the spec's keys imply: rounds are worth
//! running only while they shrink what is left to copy. A round that wrote
//! more than [`FLAT`] of the round before (but not past the growth limit)
//! left the dirty set about where it was: the process dirties memory about
//! as fast as the rounds copy it, so further rounds would copy the same
//! pages again and the final dump would not get any smaller.

use crate::profile::model::PreDump;

/// A round that wrote more than this fraction of the previous round's pages
/// did not shrink the dirty set meaningfully (less than 10 %).
pub const FLAT: f64 = 0.90;

/// Why pre-copy stops after a round that wrote `written` pages, or `None`
/// to go on (the caller also stops at `iterations`).
pub fn stop_reason(previous: Option<u64>, written: u64, cfg: &PreDump) -> Option<String> {
    let min_pages = u64::try_from(cfg.min_pages().0).unwrap_or(0);
    if written <= min_pages {
        return Some(format!(
            "the round wrote {written} pages, at most min_pages = {min_pages}"
        ));
    }
    let prev = previous?;
    let growth = cfg.max_growth().0;
    #[allow(clippy::cast_precision_loss)]
    let (w, p) = (written as f64, prev as f64);
    if w > p * (1.0 + growth) {
        return Some(format!(
            "the round wrote {written} pages, more than (1 + max_growth = {growth}) × {prev} of the round before: memory is dirtied faster than it is copied"
        ));
    }
    if w > p * FLAT {
        let pct = (w / p * 100.0).round();
        return Some(format!(
            "the round wrote {written} pages, {pct} % of the {prev} of the round before: the dirty set is not shrinking (memory is dirtied about as fast as it is copied), so more rounds would not make the final dump smaller"
        ));
    }
    None
}

/// Replay the rule over a sequence of rounds: how many rounds run.
pub fn rounds_run(pages: &[u64], cfg: &PreDump) -> usize {
    let max = usize::try_from(cfg.iterations().0).unwrap_or(1);
    let mut prev = None;
    for (i, w) in pages.iter().enumerate().take(max) {
        if stop_reason(prev, *w, cfg).is_some() {
            return i + 1;
        }
        prev = Some(*w);
    }
    pages.len().min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::model::PreDump;
    use crate::profile::value::{Fraction, Int, Spanned};
    use crate::source::{FileId, Span};

    fn cfg(iterations: i64, min_pages: i64, growth: f64) -> PreDump {
        let s = Span::new(FileId(0), 0, 0);
        PreDump {
            iterations: Some(Spanned {
                value: Int::<1, 64>(iterations),
                span: s,
                key_span: s,
            }),
            mode: None,
            min_pages: Some(Spanned {
                value: Int(min_pages),
                span: s,
                key_span: s,
            }),
            max_growth: Some(Spanned {
                value: Fraction(growth),
                span: s,
                key_span: s,
            }),
        }
    }

    // Sequences of pages_written as recorded from stats-dump of real rounds
    // (a 256 MiB workload that dirties a few MiB per round).
    #[test]
    fn converging_workload_stops_at_min_pages() {
        let c = cfg(8, 64, 0.10);
        assert_eq!(rounds_run(&[65_560, 2_310, 1_204, 60, 58], &c), 4);
    }

    #[test]
    fn diverging_workload_stops_when_growth_exceeds_the_limit() {
        let c = cfg(8, 64, 0.10);
        // Round 3 wrote 30 % more than round 2.
        assert_eq!(rounds_run(&[65_560, 10_000, 13_000, 9_000], &c), 3);
        let within = stop_reason(Some(10_000), 11_000, &c).unwrap();
        assert!(within.contains("not shrinking"), "{within}");
        let past = stop_reason(Some(10_000), 11_001, &c).unwrap();
        assert!(past.contains("more than (1 + max_growth = 0.1)"), "{past}");
    }

    // A process that rewrites its whole 64 MiB all the time: every round
    // writes about every page again. Before, all `iterations` rounds ran.
    #[test]
    fn flat_rounds_stop_and_say_the_dirty_set_is_not_shrinking() {
        let c = cfg(8, 64, 0.10);
        assert_eq!(rounds_run(&[16_400, 16_390, 16_395, 16_401, 16_388], &c), 2);
        let why = stop_reason(Some(16_400), 16_390, &c).unwrap();
        assert!(why.contains("100 % of the 16400"), "{why}");
        assert!(why.contains("not shrinking"), "{why}");
        // Noise around a flat line stops too; a real shrink goes on.
        assert!(stop_reason(Some(10_000), 9_001, &c).is_some());
        assert!(stop_reason(Some(10_000), 9_000, &c).is_none());
        // With max_growth = 0 the growth test comes first.
        let strict = cfg(8, 64, 0.0);
        let why = stop_reason(Some(10_000), 10_001, &strict).unwrap();
        assert!(why.contains("max_growth"), "{why}");
        let why = stop_reason(Some(10_000), 10_000, &strict).unwrap();
        assert!(why.contains("not shrinking"), "{why}");
    }

    #[test]
    fn the_first_round_is_never_judged_against_a_previous_one() {
        let c = cfg(8, 64, 0.10);
        assert!(stop_reason(None, 1_000_000, &c).is_none());
        assert!(stop_reason(None, 64, &c).is_some());
    }

    #[test]
    fn iterations_bound_the_rounds() {
        let c = cfg(3, 0, 1.0);
        assert_eq!(rounds_run(&[1000, 900, 800, 700, 600], &c), 3);
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let d = PreDump::default();
        assert_eq!(d.iterations().0, 3);
        assert_eq!(d.min_pages().0, 64);
        assert!((d.max_growth().0 - 0.10).abs() < 1e-9);
    }
}
