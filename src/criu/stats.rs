//! Reader for CRIU's `stats-dump` / `stats-restore` files (written to the
//! work dir): `u32 0x55105940`, `u32 0x57093306`, `u32 size`, then a
//! protobuf `stats_entry`. All times are microseconds.

use std::path::{Path, PathBuf};

use prost::Message;

/// `IMG_SERVICE_MAGIC`.
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// `STATS_MAGIC`.
pub const STATS_MAGIC: u32 = 0x5709_3306;

/// `dump_stats_entry` from `images/stats.proto`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct DumpStatsEntry {
    #[prost(uint32, required, tag = "1")]
    pub freezing_time: u32,
    #[prost(uint32, required, tag = "2")]
    pub frozen_time: u32,
    #[prost(uint32, required, tag = "3")]
    pub memdump_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub memwrite_time: u32,
    #[prost(uint64, required, tag = "5")]
    pub pages_scanned: u64,
    #[prost(uint64, required, tag = "6")]
    pub pages_skipped_parent: u64,
    #[prost(uint64, required, tag = "7")]
    pub pages_written: u64,
    #[prost(uint32, optional, tag = "8")]
    pub irmap_resolve: Option<u32>,
    #[prost(uint64, required, tag = "9")]
    pub pages_lazy: u64,
    #[prost(uint64, optional, tag = "10")]
    pub page_pipes: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub page_pipe_bufs: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub shpages_scanned: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub shpages_skipped_parent: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub shpages_written: Option<u64>,
}

/// `restore_stats_entry`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreStatsEntry {
    #[prost(uint64, required, tag = "1")]
    pub pages_compared: u64,
    #[prost(uint64, required, tag = "2")]
    pub pages_skipped_cow: u64,
    #[prost(uint32, required, tag = "3")]
    pub forking_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pub pages_restored: Option<u64>,
}

/// `stats_entry`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    pub restore: Option<RestoreStatsEntry>,
}

/// Why a stats file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file could not be read.
    #[error("cannot read CRIU stats: {0}")]
    Io(#[from] std::io::Error),
    /// Fewer bytes than the header or the announced payload.
    #[error("{}: truncated CRIU stats file ({got} bytes, need {need})", path.display())]
    Truncated {
        /// File (empty for in-memory input).
        path: PathBuf,
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A magic number did not match.
    #[error("{}: not a CRIU stats file (magic {found:#010x}, expected {expected:#010x})", path.display())]
    BadMagic {
        /// File (empty for in-memory input).
        path: PathBuf,
        /// What was found.
        found: u32,
        /// What was expected.
        expected: u32,
    },
    /// The payload is not a valid `stats_entry`.
    #[error("{}: bad stats payload: {source}", path.display())]
    Decode {
        /// File (empty for in-memory input).
        path: PathBuf,
        /// Decoder error.
        #[source]
        source: prost::DecodeError,
    },
}

/// Parse the bytes of a stats file.
pub fn parse(bytes: &[u8]) -> Result<StatsEntry, StatsError> {
    parse_named(bytes, Path::new(""))
}

/// Read and parse a `stats-dump` / `stats-restore` file.
pub fn read(path: &Path) -> Result<StatsEntry, StatsError> {
    let bytes = fs_err::read(path)?;
    parse_named(&bytes, path)
}

fn parse_named(bytes: &[u8], path: &Path) -> Result<StatsEntry, StatsError> {
    let word = |i: usize| -> Result<u32, StatsError> {
        bytes
            .get(i..i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or(StatsError::Truncated {
                path: path.to_path_buf(),
                got: bytes.len(),
                need: i + 4,
            })
    };
    for (off, expected) in [(0, IMG_SERVICE_MAGIC), (4, STATS_MAGIC)] {
        let found = word(off)?;
        if found != expected {
            return Err(StatsError::BadMagic {
                path: path.to_path_buf(),
                found,
                expected,
            });
        }
    }
    let size = usize::try_from(word(8)?).unwrap_or(usize::MAX);
    let need = size.saturating_add(12);
    let payload = bytes.get(12..need).ok_or(StatsError::Truncated {
        path: path.to_path_buf(),
        got: bytes.len(),
        need,
    })?;
    StatsEntry::decode(payload).map_err(|source| StatsError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Encode `entry` in the on-disk layout (for tests and fixtures).
pub fn encode(entry: &StatsEntry) -> Vec<u8> {
    let payload = entry.encode_to_vec();
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
    out.extend_from_slice(&STATS_MAGIC.to_le_bytes());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&payload);
    out
}

/// Plain summary of a stats file for reports (times in microseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSummary {
    /// Dump side, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<DumpSummary>,
    /// Restore side, if present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSummary>,
}

/// Dump statistics.
#[allow(missing_docs)]
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DumpSummary {
    pub freezing_time_us: u32,
    pub frozen_time_us: u32,
    pub memdump_time_us: u32,
    pub memwrite_time_us: u32,
    pub irmap_resolve_us: Option<u32>,
    pub pages_scanned: u64,
    pub pages_skipped_parent: u64,
    pub pages_written: u64,
    pub pages_lazy: u64,
    pub page_pipes: Option<u64>,
    pub page_pipe_bufs: Option<u64>,
    pub shpages_scanned: Option<u64>,
    pub shpages_skipped_parent: Option<u64>,
    pub shpages_written: Option<u64>,
}

/// Restore statistics.
#[allow(missing_docs)]
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreSummary {
    pub pages_compared: u64,
    pub pages_skipped_cow: u64,
    pub pages_restored: Option<u64>,
    pub forking_time_us: u32,
    pub restore_time_us: u32,
}

impl StatsSummary {
    /// The summary of a stats file CRIU wrote (empty when it cannot be read:
    /// a failed step may leave none).
    pub fn of_file(path: &std::path::Path) -> StatsSummary {
        read(path)
            .map(|s| StatsSummary::from(&s))
            .unwrap_or_default()
    }
}

impl From<&StatsEntry> for StatsSummary {
    fn from(e: &StatsEntry) -> Self {
        Self {
            dump: e.dump.as_ref().map(|d| DumpSummary {
                freezing_time_us: d.freezing_time,
                frozen_time_us: d.frozen_time,
                memdump_time_us: d.memdump_time,
                memwrite_time_us: d.memwrite_time,
                irmap_resolve_us: d.irmap_resolve,
                pages_scanned: d.pages_scanned,
                pages_skipped_parent: d.pages_skipped_parent,
                pages_written: d.pages_written,
                pages_lazy: d.pages_lazy,
                page_pipes: d.page_pipes,
                page_pipe_bufs: d.page_pipe_bufs,
                shpages_scanned: d.shpages_scanned,
                shpages_skipped_parent: d.shpages_skipped_parent,
                shpages_written: d.shpages_written,
            }),
            restore: e.restore.as_ref().map(|r| RestoreSummary {
                pages_compared: r.pages_compared,
                pages_skipped_cow: r.pages_skipped_cow,
                pages_restored: r.pages_restored,
                forking_time_us: r.forking_time,
                restore_time_us: r.restore_time,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump_entry() -> StatsEntry {
        StatsEntry {
            dump: Some(DumpStatsEntry {
                freezing_time: 120,
                frozen_time: 4500,
                memdump_time: 300,
                memwrite_time: 800,
                pages_scanned: 1000,
                pages_skipped_parent: 0,
                pages_written: 250,
                irmap_resolve: Some(0),
                pages_lazy: 0,
                page_pipes: Some(1),
                page_pipe_bufs: Some(2),
                shpages_scanned: None,
                shpages_skipped_parent: None,
                shpages_written: None,
            }),
            restore: None,
        }
    }

    #[test]
    fn round_trip_dump() {
        let bytes = encode(&dump_entry());
        assert_eq!(&bytes[..4], &[0x40, 0x59, 0x10, 0x55]);
        let back = parse(&bytes).unwrap();
        assert_eq!(back, dump_entry());
        let s = StatsSummary::from(&back);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["dump"]["pages_written"], 250);
        assert_eq!(json["dump"]["frozen_time_us"], 4500);
        assert!(json.get("restore").is_none());
    }

    #[test]
    fn round_trip_restore_file() {
        let e = StatsEntry {
            dump: None,
            restore: Some(RestoreStatsEntry {
                pages_compared: 0,
                pages_skipped_cow: 0,
                forking_time: 10,
                restore_time: 20,
                pages_restored: Some(99),
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats-restore");
        fs_err::write(&p, encode(&e)).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(
            StatsSummary::from(&back).restore.unwrap().pages_restored,
            Some(99)
        );
    }

    #[test]
    fn errors_never_panic() {
        let good = encode(&dump_entry());
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_err(), "prefix {n} must fail");
        }
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(
            parse(&bad),
            Err(StatsError::BadMagic {
                expected: IMG_SERVICE_MAGIC,
                ..
            })
        ));
        let mut bad = good.clone();
        bad[4] ^= 1;
        assert!(matches!(
            parse(&bad),
            Err(StatsError::BadMagic {
                expected: STATS_MAGIC,
                ..
            })
        ));
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&huge), Err(StatsError::Truncated { .. })));
        let mut garbage = good[..12].to_vec();
        garbage[8..12].copy_from_slice(&3u32.to_le_bytes());
        garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(parse(&garbage), Err(StatsError::Decode { .. })));
        assert!(read(Path::new("/nonexistent/stats-dump")).is_err());
    }
}
