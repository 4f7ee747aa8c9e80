// The body shared by `fuzz_criu_log` and the stable-Rust replay in
// `tests/fuzz_replay.rs`: analyse arbitrary bytes as a CRIU log (lossy
// UTF-8, as `analyze_file` reads it), build the excerpt, and classify the
// failure from it as `apply` does. Nothing may panic, and the summary must
// keep its own promises (line numbers in range, excerpt in file order and
// holding every picked line).

use ckptctl::criu::errors::{clean_errmsg, is_noise, known_cause};
use ckptctl::criu::log::{analyze, strip_timestamp};

/// Run one input.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let s = analyze(&text);
    assert!(s.errors.len() <= 8, "{} errors kept", s.errors.len());
    for l in s.errors.iter().chain(&s.excerpt).chain(&s.bug) {
        assert!(
            l.number >= 1 && l.number <= lines,
            "line {} of {lines}",
            l.number
        );
    }
    assert!(s.excerpt.windows(2).all(|w| w[0].number < w[1].number));
    for e in &s.errors {
        assert!(s.excerpt.iter().any(|x| x.number == e.number));
    }
    let _ = s.outcome().map(|m| m.succeeded());
    let _ = s.excerpt_lines();
    let texts = s.error_texts();
    let first = texts.first().copied();
    let _ = known_cause(None, first, &texts);
    let _ = known_cause(Some(libc_esrch()), None, &texts);
    for line in text.lines().take(64) {
        let _ = strip_timestamp(line);
        let _ = is_noise(line);
        let _ = clean_errmsg(line);
    }
    let _ = clean_errmsg(&text);
    let _ = serde_json::to_string(&s);
}

/// ESRCH without a libc dependency in the fuzz crate.
fn libc_esrch() -> i32 {
    3
}
