//! Every integer spelling decodes to the value the format's own reader gives:
//! TOML (decimal with sign and `_`, `0x`, `0o`, `0b`) against the `toml`
//! crate, YAML 1.2 core schema (decimal with sign, `0x`, `0o`) against
//! yaml-rust2's resolver. The cases are generated from a seeded generator; the
//! seed is printed and `CKPTCTL_INT_SEED=N` replays a run.
//!
//! And end to end: a radix literal reaches the rendered CRIU options intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

use std::process::Command;

use ckptctl::profile::node::{Kind, parse_toml, parse_yaml};
use ckptctl::source::SourceMap;

/// xorshift64*: small, seedable, good enough to spread values over i64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Values of every magnitude: small ones, around powers of two, extremes.
    fn value(&mut self) -> i64 {
        match self.below(5) {
            0 => self.below(1000) as i64,
            1 => {
                let bits = self.below(63) as u32;
                let base = 1i64 << bits;
                base.wrapping_add(self.below(3) as i64 - 1).max(0)
            }
            2 => [0, 1, i64::MAX, i64::MAX - 1, 65535, 65536, 255, 256][self.below(8) as usize],
            _ => (self.next() >> self.below(64)) as i64,
        }
    }
}

fn seed() -> u64 {
    let seed = std::env::var("CKPTCTL_INT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("integer spellings: CKPTCTL_INT_SEED={seed}");
    seed
}

/// Digits with `_` between some of them (TOML allows one between two digits).
fn underscored(digits: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && rng.below(4) == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

fn mixed_case(digits: &str, rng: &mut Rng) -> String {
    digits
        .chars()
        .map(|c| {
            if rng.below(2) == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn toml_spelling(v: i64, rng: &mut Rng) -> String {
    // Prefixed forms are non-negative only (TOML 1.0).
    match if v < 0 { 0 } else { rng.below(4) } {
        0 => {
            let sign = match rng.below(3) {
                0 if v >= 0 => "+",
                _ => "",
            };
            let digits = v.unsigned_abs().to_string();
            let minus = if v < 0 { "-" } else { "" };
            format!("{minus}{sign}{}", underscored(&digits, rng))
        }
        1 => format!(
            "0x{}",
            underscored(&mixed_case(&format!("{v:x}"), rng), rng)
        ),
        2 => format!("0o{}", underscored(&format!("{v:o}"), rng)),
        _ => format!("0b{}", underscored(&format!("{v:b}"), rng)),
    }
}

fn yaml_spelling(v: i64, rng: &mut Rng) -> String {
    match if v < 0 { 0 } else { rng.below(3) } {
        0 => {
            let plus = if v >= 0 && rng.below(2) == 0 { "+" } else { "" };
            format!("{plus}{v}")
        }
        1 => format!("0x{}", mixed_case(&format!("{v:x}"), rng)),
        _ => format!("0o{v:o}"),
    }
}

fn ours_toml(text: &str) -> Kind {
    let mut m = SourceMap::new();
    let id = m.add("t.toml".into(), "t.toml".into(), text);
    let n = parse_toml(id, m.get(id)).unwrap_or_else(|d| panic!("{text}: {d:?}"));
    n.get("v").unwrap().value.kind.clone()
}

fn ours_yaml(text: &str) -> Kind {
    let mut m = SourceMap::new();
    let id = m.add("t.yaml".into(), "t.yaml".into(), text);
    let n = parse_yaml(id, m.get(id)).unwrap_or_else(|d| panic!("{text}: {d:?}"));
    n.get("v").unwrap().value.kind.clone()
}

#[test]
fn toml_integers_decode_as_the_toml_crate_reads_them() {
    let mut rng = Rng(seed());
    for _ in 0..4000 {
        let mut v = rng.value();
        if rng.below(4) == 0 {
            v = -v;
        }
        let text = format!("v = {}\n", toml_spelling(v, &mut rng));
        let theirs: toml::Table = toml::from_str(&text).unwrap();
        let theirs = theirs["v"].as_integer().unwrap();
        assert_eq!(theirs, v, "{text}: the generator and toml disagree");
        assert_eq!(ours_toml(&text), Kind::Int(theirs), "{text}");
    }
}

#[test]
fn yaml_integers_decode_as_a_yaml_1_2_reader_reads_them() {
    use yaml_rust2::{Yaml, YamlLoader};
    let mut rng = Rng(seed());
    for _ in 0..4000 {
        let mut v = rng.value();
        if rng.below(4) == 0 {
            v = -v;
        }
        let text = format!("v: {}\n", yaml_spelling(v, &mut rng));
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let theirs = &docs[0]["v"];
        let Yaml::Integer(theirs) = *theirs else {
            panic!("{text}: yaml-rust2 reads {theirs:?}");
        };
        assert_eq!(theirs, v, "{text}: the generator and yaml-rust2 disagree");
        assert_eq!(ours_yaml(&text), Kind::Int(theirs), "{text}");
    }
}

#[test]
fn integers_beyond_64_bits_keep_their_sign() {
    for (text, want) in [
        ("v = 9223372036854775808\n", f64::INFINITY),
        ("v = -9223372036854775809\n", f64::NEG_INFINITY),
        ("v = 0xFFFF_FFFF_FFFF_FFFF\n", f64::INFINITY),
        (
            "v = 0b1_0000000000000000000000000000000000000000000000000000000000000000\n",
            f64::INFINITY,
        ),
    ] {
        assert_eq!(ours_toml(text), Kind::Float(want), "{text}");
    }
    assert_eq!(ours_toml("v = 0b11\n"), Kind::Int(3));
    assert_eq!(ours_toml("v = -9223372036854775808\n"), Kind::Int(i64::MIN));
}

#[test]
fn radix_literals_reach_criu_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "version = 1\nname = \"radix\"\naction = \"checkpoint\"\n\
         [target]\npid = 0o777\n[images]\ndir = \"/var/lib/ckptctl/radix\"\nlog_level = 0b11\n\
         [page_server]\naddress = \"10.0.0.2\"\nport = 0xFFFF\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ckptctl"))
        .args(["render", "--format", "criu-args"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args: Vec<&str> = stdout.split_whitespace().collect();
    let after = |flag: &str| {
        let i = args
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag} in {stdout}"));
        args[i + 1]
    };
    assert_eq!(after("--tree"), "511", "{stdout}");
    assert_eq!(after("--port"), "65535", "{stdout}");
    assert!(args.contains(&"--verbosity=3"), "{stdout}");
}
