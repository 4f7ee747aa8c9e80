//! `ckptctl`: declarative CRIU checkpoint, restore and migration profiles.
//!
//! Data flows `cli` → [`profile`] (read, spanned, `extends` merged) →
//! [`validate`] (cross-field rules) → review (policy, diff) → render (CRIU
//! options, pure) → plan/apply → [`criu`] (the `criu swrk` RPC engine).
//! Nothing before apply spawns a process. Apply and migrate run in one
//! session (`apply::session`); docs/architecture.md says which file holds
//! what.

pub mod apply;
pub mod cli;
pub mod criu;
pub mod diag;
pub mod diff;
pub mod digest;
pub mod failure;
pub mod images;
pub mod import;
pub mod inspect;
pub mod migrate;
pub mod plan;
pub mod policy;
pub mod private_file;
pub mod profile;
pub mod render;
pub mod reporter;
pub mod source;
pub mod validate;
