//! Driving CRIU: RPC messages, the `criu swrk` client, log and stats
//! parsing, error classification, locating the binary and probing what the
//! host allows.
//!
//! Messages matched by [`errors::known_cause`] were captured from CRIU
//! 4.1.1 (the cases are in `src/criu/errors.rs`'s tests); the real-CRIU
//! tests (`tests/criu_engine.rs`, `tests/apply_criu.rs`) check the rest.
//! This layer depends on nothing else in the crate (`tests/layering.rs`).

pub mod child;
pub mod errors;
pub mod find;
pub mod leash;
pub mod log;
pub mod probe;
pub mod restored;
pub mod rpc;
pub mod stats;
pub mod swrk;
pub mod version;

pub use errors::{CriuError, KnownCause, known_cause};
pub use find::{CriuSource, FeatureCheck, FindError, FoundCriu, check_feature, find_criu};
pub use swrk::{Notify, NotifyReply, Received, Swrk};
pub use version::CriuVersion;
