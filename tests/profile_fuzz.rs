//! The fuzz body of `fuzz/` on stable Rust: every committed seed of
//! `fuzz/corpus/` plus a few thousand deterministic mutations of them, in
//! both formats. No input may panic; every span stays inside its file.
//! (Long runs: `cd fuzz && cargo +nightly fuzz run fuzz_toml corpus/fuzz_toml`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

#[path = "../fuzz/fuzz_targets/body.rs"]
mod body;

use std::path::PathBuf;

use ckptctl::source::Format;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz corpus")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "=",
    ":",
    ": ",
    ",",
    ".",
    "\n",
    "\r\n",
    "\t",
    " ",
    "#",
    "- ",
    "---\n",
    "...\n",
    "&a ",
    "*a",
    "!!str ",
    "!x ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "é",
    "😀",
    "\u{feff}",
    "\0",
    "\\u00e9",
    "0",
    "-1",
    "65536",
    "9223372036854775808",
    "1e999",
    "nan",
    "inf",
    "0x",
    "true",
    "null",
    "~",
    "1979-05-27T07:32:00Z",
    "version",
    "extends",
    "[target]",
    "pid",
    "[restore]",
    "veth_pairs",
    "[checkpoint.pre_dump]",
    "dir",
    "images",
    "lazy_pages",
    "address",
    "port",
    "[page_server.tls]",
    "cert",
    "\"net\"",
    "empty_ns",
];

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            2 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 if !other.is_empty() => {
                let s = rng.below(other.len());
                let e = (s + rng.below(64)).min(other.len());
                v.splice(at..at, other[s..e].iter().copied());
            }
            4 if !v.is_empty() => {
                // Duplicate a line: duplicate keys and tables.
                let s = v[..at.min(v.len())]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                let e = v[s..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(v.len(), |i| s + i + 1);
                let line = v[s..e].to_vec();
                v.splice(e..e, line);
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.extend_from_slice(t);
            }
        }
    }
    v
}

fn run(target: &str, format: Format, rounds: usize) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty());
    for s in &seeds {
        body::fuzz_one(s, format);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for i in 0..rounds {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let m = mutate(&mut rng, a, b);
        let res = std::panic::catch_unwind(|| body::fuzz_one(&m, format));
        if res.is_err() {
            let dir = std::env::temp_dir().join(format!("ckptctl-fuzz-crash-{target}-{i}"));
            std::fs::write(&dir, &m).unwrap();
            panic!("input #{i} panicked; saved to {}", dir.display());
        }
    }
}

#[test]
fn toml_seeds_and_mutations_never_panic() {
    run("fuzz_toml", Format::Toml, 4000);
}

#[test]
fn yaml_seeds_and_mutations_never_panic() {
    run("fuzz_yaml", Format::Yaml, 4000);
}

#[test]
fn pathological_inputs() {
    for f in [Format::Toml, Format::Yaml] {
        body::fuzz_one(b"", f);
        body::fuzz_one("\u{feff}".as_bytes(), f);
        body::fuzz_one(&b"[".repeat(10_000), f);
        body::fuzz_one(&b"{".repeat(10_000), f);
        body::fuzz_one(&b"- ".repeat(5_000), f);
        body::fuzz_one(&b"a = [".repeat(3_000), f);
        body::fuzz_one(
            format!("a = {}{}", "[".repeat(5000), "]".repeat(5000)).as_bytes(),
            f,
        );
        body::fuzz_one(
            format!("a: {}{}", "[".repeat(5000), "]".repeat(5000)).as_bytes(),
            f,
        );
        body::fuzz_one(
            format!("a = {}1{}", "{b = ".repeat(3000), "}".repeat(3000)).as_bytes(),
            f,
        );
        let staircase: String = (0..3000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        body::fuzz_one(staircase.as_bytes(), f);
    }
    // Billion laughs: aliases are expanded with a bound.
    let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        y.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let t = std::time::Instant::now();
    body::fuzz_one(y.as_bytes(), Format::Yaml);
    assert!(t.elapsed().as_secs() < 10, "{:?}", t.elapsed());
}
