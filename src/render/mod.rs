//! Render: the **single** place that turns a profile
//! ([`crate::profile::model::Profile`]) into CRIU options.
//!
//! Everything here is a pure function: no I/O, no processes. `apply` sends
//! [`criu_opts`] over RPC; `ckptctl render` prints the very same options as a
//! `criu` command line ([`criu_args`]), a CRIU configuration file
//! ([`criu_conf`]) or RPC JSON ([`rpc_json`]). The three printed forms are
//! derived from one [`Invocation`] through one mapping table
//! ([`option_table`]: RPC field → CLI long name), so they cannot diverge.
//!
//! # Steps
//!
//! An action is a sequence of [`CriuStep`]s ([`steps`]):
//!
//! | action / role | steps |
//! |---|---|
//! | `checkpoint` | `PreDump{1..=n}` (with `[checkpoint.pre_dump]`), `Dump{pre_dump_rounds: n}` |
//! | `restore` | `LazyPagesDaemon` (with `lazy_pages.enabled`), `Restore` |
//! | `migrate`, role source | as `checkpoint` |
//! | `migrate`, role destination | `PageServer{round}` per pre-dump round and for the final dump (with `[page_server]`), `LazyPagesDaemon` (lazy), `Restore` |
//!
//! Pre-dump round `N` writes `images.dir/pre-N` with parent `../pre-(N-1)`;
//! the final dump after `n` rounds uses parent `pre-n` (relative to
//! `images.dir`, as CRIU wants). `apply` may stop pre-copy early (min_pages,
//! max_growth): it then renders `Dump { pre_dump_rounds: rounds_run }`.
//!
//! # Which options go where
//!
//! * every step: images dir (RPC `images_dir_fd = -1` plus `images_dir`, which
//!   apply replaces with an fd), work dir (`images.work_dir`, default
//!   `images.dir`; RPC `work_dir_fd` is set by apply), `log_file` (a bare
//!   name such as `dump.log`, `pre-dump-2.log`), `log_level`;
//! * `[process]` on pre-dump, dump and restore;
//! * `[checkpoint]` on dump (pre-dump gets `timeout`, `freeze_cgroup`,
//!   `auto_dedup` and `pre_dump.mode`); `leave_running` only on the final dump;
//! * a `migrate` restore is `leave_stopped`: apply resumes the tree once the
//!   source has ended its copy;
//! * `[restore]` only on restore (`mntns_compat_mode` is refused by CRIU
//!   elsewhere); `checkpoint.empty_ns` on dump and restore;
//! * `[cgroups]`: mode, roots and yard on dump and restore; props and dump
//!   controllers on dump;
//! * `[page_server]`: pre-dump and dump send pages to `address:port` unless
//!   the dump is lazy; `PageServer` listens on `port` (and on `address` when
//!   it is an IP literal, else on every IPv4 address);
//! * `[lazy_pages]` with `address`: the dump serves pages (`lazy_pages`,
//!   `ps.port`; CRIU ignores the address over RPC and binds 0.0.0.0, so none
//!   is rendered); the destination's daemon fetches them from
//!   `address:port`. Without `address` the dump is an ordinary dump and the
//!   daemon reads pages from the local images;
//! * `page_server.tls` on every step that moves pages over the network;
//! * `notify_scripts = true` on pre-dump, dump and restore (RPC only, apply
//!   relies on NOTIFY);
//! * `criu.host_config = "ignore"`: `--no-default-config` on the command line
//!   (a `--config` file disables the default files by itself).
//!
//! Booleans are sent only when true. Valued options with a default
//! (`ghost_limit`, `timeout`, `network_lock`, cgroup mode, `log_level`) are
//! always sent, so host configuration files cannot change them silently.
//!
//! The target pid comes from `target.pid`, or from the `pid` argument; when
//! neither is known (pidfile, `apply --pid`) the command line and config file
//! show the placeholder `<PID>` and the RPC options leave `pid` unset.

mod formats;
mod options;
mod steps;
mod table;

pub use formats::*;
pub use options::*;
pub use steps::*;
pub use table::*;

/// Placeholder shown for a pid that is only known at apply time.
pub const PID_PLACEHOLDER: &str = "<PID>";

/// `CLONE_NEWNET`, the only bit CRIU accepts in `empty_ns`.
pub const CLONE_NEWNET: u32 = 0x4000_0000;
