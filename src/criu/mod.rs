//! Driving CRIU: RPC messages, the `criu swrk` client, log and stats
//! parsing, error classification, locating the binary and probing what the
//! host allows.
//!
//! The facts this module relies on are collected in
//! `shared/reference/criu.md`; messages matched by [`errors::known_cause`]
//! were captured from CRIU 4.1.1.

pub mod errors;
pub mod find;
pub mod log;
pub mod probe;
pub mod rpc;
pub mod stats;
pub mod swrk;

pub use errors::{CriuError, KnownCause, known_cause};
pub use find::{CriuSource, FeatureCheck, FindError, FoundCriu, check_feature, find_criu};
pub use swrk::{CriuVersion, Notify, NotifyReply, Received, Swrk};
