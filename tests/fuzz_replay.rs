//! The bodies of the cargo-fuzz targets `fuzz_extends`, `fuzz_policy`,
//! `fuzz_criu_log`, `fuzz_stats`, `fuzz_rpc` and `fuzz_images` on stable Rust: every
//! committed seed of `fuzz/corpus/<target>/`, plus a few hundred
//! deterministic byte mutations of them. The bodies are the same files the
//! fuzz targets include, so both paths run identical code.
//! (`fuzz_toml` / `fuzz_yaml` are replayed by `tests/profile_fuzz.rs`.)
//!
//! `CKPTCTL_UPDATE_GOLDEN=1 cargo test --test fuzz_replay` writes the
//! encoded RPC and stats seeds from the crate's own prost structs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test crate: failures panic

#[path = "../fuzz/fuzz_targets/body_criu_log.rs"]
mod criu_log;
#[path = "../fuzz/fuzz_targets/body_extends.rs"]
mod extends;
#[path = "../fuzz/fuzz_targets/body_images.rs"]
mod images;
#[path = "../fuzz/fuzz_targets/body_policy.rs"]
mod policy;
#[path = "../fuzz/fuzz_targets/body_rpc.rs"]
mod rpc;
#[path = "../fuzz/fuzz_targets/body_stats.rs"]
mod stats;

use std::path::PathBuf;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .expect("fuzz corpus")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let out: Vec<_> = files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert!(!out.is_empty(), "no seeds for {target}");
    out
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

/// Flip, insert, delete, splice and truncate bytes.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let b = [0u8, 0xff, 0x80, b'\n', b'"', b'[', b'(', b':'][rng.below(8)];
                v.insert(at, b);
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
            _ => v.truncate(at),
        }
    }
    v
}

fn replay(target: &str, body: fn(&[u8]), rounds: usize) {
    let seeds = seeds(target);
    for (path, s) in &seeds {
        let res = std::panic::catch_unwind(|| body(s));
        assert!(res.is_ok(), "seed {} panicked", path.display());
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    for i in 0..rounds {
        let a = &seeds[rng.below(seeds.len())].1;
        let b = &seeds[rng.below(seeds.len())].1;
        let m = mutate(&mut rng, a, b);
        if std::panic::catch_unwind(|| body(&m)).is_err() {
            let p = std::env::temp_dir().join(format!("ckptctl-fuzz-crash-{target}-{i}"));
            std::fs::write(&p, &m).unwrap();
            panic!("mutation #{i} panicked; saved to {}", p.display());
        }
    }
}

#[test]
fn extends_seeds_and_mutations() {
    replay("fuzz_extends", extends::fuzz_one, 300);
}

#[test]
fn policy_seeds_and_mutations() {
    replay("fuzz_policy", policy::fuzz_one, 1000);
}

#[test]
fn criu_log_seeds_and_mutations() {
    replay("fuzz_criu_log", criu_log::fuzz_one, 1000);
}

#[test]
fn stats_seeds_and_mutations() {
    replay("fuzz_stats", stats::fuzz_one, 3000);
}

#[test]
fn images_seeds_and_mutations() {
    replay("fuzz_images", images::fuzz_one, 600);
}

/// The base checkpoint of `fuzz_images` reads whole, with what was put in
/// it (so a mutation that breaks nothing is still checked end to end).
#[test]
fn images_base_checkpoint_reads_back() {
    let d = tempfile::tempdir().unwrap();
    images::write_checkpoint(d.path(), usize::MAX, &[]);
    let c =
        ckptctl::images::read(d.path(), ckptctl::images::ReadOptions { cmdline: true }).unwrap();
    assert_eq!(c.processes.len(), 2);
    let root = &c.processes[0];
    assert_eq!(
        root.cmdline.as_deref(),
        Some(&["sh".to_string(), "-c".into(), "true".into()][..])
    );
    assert_eq!(root.threads.len(), 2);
    assert_eq!(root.threads[1].comm, "worker");
    assert_eq!(root.memory.vmas, 2);
    assert_eq!(root.memory.dumped_bytes, 8192);
    assert_eq!(root.memory.lazy_bytes, 4096);
    assert_eq!(root.memory.parent_bytes, 8192);
    assert_eq!(root.files.len(), 6);
    let json = serde_json::to_value(&root.files).unwrap();
    assert_eq!(json[2]["type"], "inet-socket");
    assert_eq!(json[2]["src"], "127.0.0.1");
    assert_eq!(json[2]["dst"], "10.0.0.1");
    assert_eq!(json[2]["state"], "ESTABLISHED");
    assert_eq!(json[3]["name"], "@abs");
    assert_eq!(json[4]["path"], "/bin/sh");
    assert_eq!(json[4]["index"], 3);
    assert_eq!(json[5]["type"], "unresolved");
    assert_eq!(json[5]["kind"], "eventfd");
    assert_eq!(c.mounts.len(), 1);
    assert_eq!(c.mounts[0].fstype, "tmpfs");
    // Every image cut anywhere is an error at an offset inside the file,
    // never a panic.
    for (i, name) in images::FILES.iter().enumerate() {
        let whole = images::base(name);
        if name.starts_with("pages-") {
            continue;
        }
        for cut in [1, 4, 7, whole.len() / 2 + 1, whole.len() - 1] {
            images::write_checkpoint(d.path(), i, &whole[..cut.min(whole.len())]);
            let e = ckptctl::images::read(d.path(), ckptctl::images::ReadOptions { cmdline: true })
                .expect_err(&format!("{name} cut at {cut}"));
            assert!(e.file.ends_with(name), "{name} cut at {cut}: {e}");
            assert!(e.offset <= cut as u64, "{name} cut at {cut}: {e}");
        }
    }
}

#[test]
fn rpc_seeds_and_mutations() {
    replay("fuzz_rpc", rpc::fuzz_one, 3000);
}

/// The `extends` target stays inside its scratch folder.
#[test]
fn extends_skips_paths_outside_the_scratch_folder() {
    let parts: [&[u8]; 1] = [b"version = 1\nextends = \"/dev/zero\"\n"];
    assert!(!extends::confined(&parts));
    let parts: [&[u8]; 1] = [b"version = 1\nextends = \"\\u002e./x.toml\"\n"];
    assert!(!extends::confined(&parts));
    let parts: [&[u8]; 2] = [b"", b"version: 1\nextends: \"\\x2e./x.toml\"\n"];
    assert!(!extends::confined(&parts));
    let parts: [&[u8]; 2] = [b"version = 1\nextends = \"sub/4.toml\"\n", b""];
    assert!(extends::confined(&parts));
}

mod encode {
    use ckptctl::criu::rpc::{
        CriuDumpResp, CriuFeatures, CriuNotify, CriuPageServerInfo, CriuReqType, CriuResp,
        CriuRestoreResp, CriuVersion,
    };
    use ckptctl::criu::stats::{DumpStatsEntry, RestoreStatsEntry, StatsEntry};
    use prost::Message;

    fn resp(kind: CriuReqType, success: bool) -> CriuResp {
        CriuResp {
            r#type: kind as i32,
            success,
            dump: None,
            restore: None,
            notify: None,
            ps: None,
            cr_errno: None,
            features: None,
            cr_errmsg: None,
            version: None,
            status: None,
        }
    }

    fn notify(script: &str, pid: Option<i32>) -> CriuResp {
        CriuResp {
            notify: Some(CriuNotify {
                script: Some(script.into()),
                pid,
            }),
            ..resp(CriuReqType::Notify, true)
        }
    }

    /// Responses as CRIU 4.1 sends them to `ckptctl apply`.
    pub fn responses() -> Vec<Vec<u8>> {
        let rlimit = "Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n";
        let list = vec![
            CriuResp {
                dump: Some(CriuDumpResp {
                    restored: Some(false),
                }),
                ..resp(CriuReqType::Dump, true)
            },
            resp(CriuReqType::PreDump, true),
            resp(CriuReqType::SinglePreDump, true),
            CriuResp {
                restore: Some(CriuRestoreResp { pid: 15437 }),
                ..resp(CriuReqType::Restore, true)
            },
            notify("pre-dump", None),
            notify("post-dump", None),
            notify("network-lock", None),
            notify("setup-namespaces", Some(16024)),
            notify("post-restore", Some(16024)),
            notify("orphan-pts-master", None),
            notify("query-ext-files", None),
            CriuResp {
                cr_errno: Some(3),
                cr_errmsg: Some(rlimit.into()),
                ..resp(CriuReqType::Dump, false)
            },
            CriuResp {
                cr_errno: Some(17),
                cr_errmsg: Some(
                    "Error (criu/cr-restore.c:1472): Can't fork for 4242: File exists\n".into(),
                ),
                ..resp(CriuReqType::Restore, false)
            },
            CriuResp {
                cr_errmsg: Some(rlimit.into()),
                ..resp(CriuReqType::Empty, false)
            },
            CriuResp {
                version: Some(CriuVersion {
                    major_number: 4,
                    minor_number: 1,
                    gitid: None,
                    sublevel: Some(1),
                    extra: None,
                    name: Some("CRIUTIBILITY".into()),
                }),
                ..resp(CriuReqType::Version, true)
            },
            CriuResp {
                version: Some(CriuVersion {
                    major_number: 3,
                    minor_number: 19,
                    gitid: Some("v3.19-12-gabc1234".into()),
                    sublevel: None,
                    extra: Some(0),
                    name: None,
                }),
                ..resp(CriuReqType::Version, true)
            },
            CriuResp {
                features: Some(CriuFeatures {
                    mem_track: Some(true),
                    lazy_pages: Some(true),
                    pidfd_store: Some(false),
                }),
                ..resp(CriuReqType::FeatureCheck, true)
            },
            CriuResp {
                ps: Some(CriuPageServerInfo {
                    address: Some("0.0.0.0".into()),
                    port: Some(27000),
                    pid: Some(18007),
                    fd: None,
                }),
                ..resp(CriuReqType::PageServer, true)
            },
            CriuResp {
                status: Some(0),
                ..resp(CriuReqType::WaitPid, true)
            },
            resp(CriuReqType::Check, true),
            resp(CriuReqType::CpuinfoDump, true),
            CriuResp {
                cr_errmsg: Some("Error (criu/cpu.c:87): CPU capabilities mismatch\n".into()),
                ..resp(CriuReqType::CpuinfoCheck, false)
            },
        ];
        list.iter().map(Message::encode_to_vec).collect()
    }

    /// Stats files like the ones CRIU wrote in the tests (synthetic edges).
    pub fn stats() -> Vec<Vec<u8>> {
        let dump = DumpStatsEntry {
            freezing_time: 120,
            frozen_time: 4500,
            memdump_time: 300,
            memwrite_time: 800,
            pages_scanned: 1000,
            pages_skipped_parent: 740,
            pages_written: 250,
            irmap_resolve: Some(0),
            pages_lazy: 10,
            page_pipes: Some(1),
            page_pipe_bufs: Some(2),
            shpages_scanned: Some(3),
            shpages_skipped_parent: Some(0),
            shpages_written: Some(3),
        };
        let restore = RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            forking_time: u32::MAX,
            restore_time: 20,
            pages_restored: Some(u64::MAX),
        };
        [
            StatsEntry {
                dump: Some(dump.clone()),
                restore: None,
            },
            StatsEntry {
                dump: None,
                restore: Some(restore.clone()),
            },
            StatsEntry {
                dump: Some(dump),
                restore: Some(restore),
            },
            StatsEntry {
                dump: None,
                restore: None,
            },
        ]
        .iter()
        .map(ckptctl::criu::stats::encode)
        .collect()
    }
}

/// The encoded seeds (content-named, as libFuzzer names them) are in the
/// committed corpora; `CKPTCTL_UPDATE_GOLDEN=1` writes the missing ones.
#[test]
fn encoded_seeds_are_committed() {
    let update = std::env::var_os("CKPTCTL_UPDATE_GOLDEN").is_some();
    let mut missing = Vec::new();
    for (target, list) in [
        ("fuzz_rpc", encode::responses()),
        ("fuzz_stats", encode::stats()),
        (
            "fuzz_images",
            images::FILES
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.starts_with("pages-"))
                .map(|(i, n)| {
                    let mut b = vec![u8::try_from(i).unwrap()];
                    b.extend(images::base(n));
                    b
                })
                .collect(),
        ),
    ] {
        let dir = corpus(target);
        for b in list {
            let name: String = b
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
                    (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
                })
                .to_le_bytes()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            let path = dir.join(format!("seed-{name}"));
            if std::fs::read(&path).ok().as_deref() != Some(&b[..]) {
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &b).unwrap();
                } else {
                    missing.push(path);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "encoded seeds missing from the corpus (CKPTCTL_UPDATE_GOLDEN=1 writes them): {missing:?}"
    );
}
