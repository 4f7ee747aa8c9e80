// The body shared by the cargo-fuzz targets and the stable-Rust test
// `tests/profile_fuzz.rs`: load arbitrary text as a profile, then turn every
// diagnostic into JSON and into a miette report. Nothing may panic, and
// every span must lie inside its file on character boundaries.

use ckptctl::diag::{RenderOptions, render_human};
use ckptctl::profile::load::load_str;
use ckptctl::source::Format;

/// Run one input (any bytes; invalid UTF-8 is dropped lossily, as the
/// loader refuses it before parsing anyway).
pub fn fuzz_one(data: &[u8], format: Format) {
    let text = String::from_utf8_lossy(data);
    let (sources, loaded) = load_str("fuzz", &text, format);
    for d in &loaded.diags {
        let j = d.to_json(&sources);
        assert!(j.code.contains("::"));
        if let Some(span) = d.span {
            let t = &sources.get(span.file).text;
            assert!(
                span.start <= span.end && (span.end as usize) <= t.len(),
                "span {span:?} outside the text"
            );
            assert!(
                t.is_char_boundary(span.start as usize) && t.is_char_boundary(span.end as usize),
                "span {span:?} splits a character"
            );
            assert!(j.line.unwrap_or(0) >= 1 && j.column.unwrap_or(0) >= 1);
        }
        let _ = render_human(d, &sources, RenderOptions::plain());
    }
    if let Some(p) = &loaded.profile {
        let _ = p.resolved();
    }
}
