// The body shared by `fuzz_extends` and the stable-Rust replay in
// `tests/fuzz_replay.rs`: split the input on NUL bytes into up to
// `MAX_PARTS` files in a scratch folder (named by `part_name`, so a part
// can reach another with `extends = "1.yaml"` or `extends: sub/4.toml`),
// then load part 0 with `profile::load::load`, as `validate` does. Nothing
// may panic, every span must lie inside its file, and a chain (cycles
// included) must end.
//
// Inputs whose `extends` could leave the scratch folder (`..`, an absolute
// path) are skipped: `extends` resolves any path, and `/dev/zero` or a FIFO
// is not what this target is about (see fuzz/README.md).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ckptctl::diag::{RenderOptions, render_human};
use ckptctl::profile::load::{LoadOptions, MAX_EXTENDS_DEPTH, load, parse_file};
use ckptctl::profile::node::Kind;
use ckptctl::source::SourceMap;

/// Separator of the parts.
pub const SEPARATOR: u8 = 0;
/// Most files one input makes (more than `MAX_EXTENDS_DEPTH`).
pub const MAX_PARTS: usize = 48;

/// File name of part `i`: `0.toml`, `1.yaml`, `2.toml`, `3.yml`,
/// `sub/4.toml`, `5.yaml`, ...
pub fn part_name(i: usize) -> String {
    let ext = ["toml", "yaml", "toml", "yml"][i % 4];
    let dir = if i % 5 == 4 { "sub/" } else { "" };
    format!("{dir}{i}.{ext}")
}

/// False when a part's `extends` (read with the loader's own parser, so
/// escapes and aliases are already resolved) could name a file outside the
/// scratch folder.
pub fn confined(parts: &[&[u8]]) -> bool {
    parts.iter().enumerate().all(|(i, part)| {
        let Ok(text) = std::str::from_utf8(part) else {
            return true;
        };
        let mut sources = SourceMap::new();
        let name = part_name(i);
        let id = sources.add(PathBuf::from(&name), name, text);
        let Ok(tree) = parse_file(id, &sources) else {
            return true;
        };
        match tree.get("extends").map(|e| &e.value.kind) {
            Some(Kind::Str(rel)) => {
                !(rel.starts_with('/') || rel.contains("..") || rel.contains('\\'))
            }
            _ => true,
        }
    })
}

fn scratch() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static DIR: PathBuf = std::env::temp_dir().join(format!(
            "ckptctl-fuzz-extends-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    }
    DIR.with(Clone::clone)
}

/// Run one input.
pub fn fuzz_one(data: &[u8]) {
    let parts: Vec<&[u8]> = data.split(|b| *b == SEPARATOR).take(MAX_PARTS).collect();
    if !confined(&parts) {
        return;
    }
    let dir = scratch();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).expect("scratch folder");
    for (i, part) in parts.iter().enumerate() {
        std::fs::write(dir.join(part_name(i)), part).expect("write a part");
    }
    for (i, as_base) in [(0, false), (parts.len() - 1, true)] {
        let name = part_name(i);
        let mut sources = SourceMap::new();
        let loaded = load(
            &dir.join(&name),
            &name,
            &mut sources,
            LoadOptions { as_base },
        );
        assert!(
            loaded.bases.len() <= MAX_EXTENDS_DEPTH,
            "{} bases",
            loaded.bases.len()
        );
        for d in &loaded.diags {
            let j = d.to_json(&sources);
            assert!(j.code.contains("::"));
            let spans = d.span.into_iter().chain(d.related.iter().map(|l| l.span));
            for span in spans {
                let t = &sources.get(span.file).text;
                assert!(
                    span.start <= span.end && (span.end as usize) <= t.len(),
                    "span {span:?} outside the text"
                );
                assert!(
                    t.is_char_boundary(span.start as usize)
                        && t.is_char_boundary(span.end as usize),
                    "span {span:?} splits a character"
                );
            }
            if d.span.is_some() {
                assert!(j.line.unwrap_or(0) >= 1 && j.column.unwrap_or(0) >= 1);
            }
            let _ = render_human(d, &sources, RenderOptions::plain());
        }
        if let Some(p) = &loaded.profile {
            let _ = p.resolved();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
