// The body shared by `fuzz_stats` and the stable-Rust replay in
// `tests/fuzz_replay.rs`: parse arbitrary bytes as a CRIU `stats-dump` /
// `stats-restore` file and summarise it as `apply` does. Nothing may panic
// or allocate what the input only announces; a file that parses must
// survive a re-encode and parse to the same entry.

use ckptctl::criu::stats::{StatsEntry, StatsSummary, encode, parse};

/// Run one input.
pub fn fuzz_one(data: &[u8]) {
    match parse(data) {
        Ok(entry) => {
            let summary = StatsSummary::from(&entry);
            let _ = serde_json::to_string(&summary);
            let again: StatsEntry = parse(&encode(&entry)).expect("a re-encoded entry parses");
            assert_eq!(again, entry);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
