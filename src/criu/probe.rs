//! Probes for what `criu check --feature` does not see: whether this host
//! can serve lazy pages from a dumped tree's memory (post-copy from the
//! source's memory, `[lazy_pages]` with an `address`).
//!
//! CRIU's page server gives each connection a pipe of `PIPE_MAX_SIZE` pages
//! (`pipe_read_dest_init`, CRIU 4.1.1: `(1 << PAGE_ALLOC_COSTLY_ORDER) *
//! PAGE_SIZE / sizeof(struct pipe_buffer)` = 819 pages on x86_64) with
//! `F_SETPIPE_SZ`, ignores a failure there, and then fails the first request
//! larger than the default 64 KiB pipe with `page-pipe: tee: 65536: Operation
//! not permitted` (the `EPERM` is the resize's). Above `fs.pipe-max-size` (1
//! MiB by default) the resize needs `CAP_SYS_RESOURCE`, which the project's
//! machines withhold from root; the guest of `scripts/test-vm.sh` has it. So
//! the probe does what CRIU does: resize a fresh pipe to that size.

use std::os::fd::AsFd;

use super::find::FeatureCheck;

/// The pseudo-feature name `check` and the gates use for the lazy page
/// server; [`super::check_feature`] answers it with [`lazy_page_server`].
pub const LAZY_PAGE_SERVER: &str = "lazy_page_server";

/// Bytes of the pipe CRIU's page server asks for (819 pages of 4 KiB).
pub const PAGE_SERVER_PIPE_BYTES: i32 = 819 * 4096;

/// Can a pipe of [`PAGE_SERVER_PIPE_BYTES`] be made here (CRIU runs with
/// this process's credentials)? Also needs `uffd-noncoop`, which the caller
/// checks with `criu check --feature`.
pub fn lazy_page_server() -> FeatureCheck {
    interpret_pipe_resize(resize_pipe(PAGE_SERVER_PIPE_BYTES), read_pipe_max_size())
}

fn resize_pipe(bytes: i32) -> nix::Result<i32> {
    let (r, _w) = nix::unistd::pipe()?;
    nix::fcntl::fcntl(r.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(bytes))
}

fn read_pipe_max_size() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Pure part of [`lazy_page_server`]: the resize's result and
/// `fs.pipe-max-size`.
pub fn interpret_pipe_resize(resize: nix::Result<i32>, pipe_max: Option<u64>) -> FeatureCheck {
    let (supported, message) = match resize {
        Ok(size) if i64::from(size) >= i64::from(PAGE_SERVER_PIPE_BYTES) => (
            true,
            format!("a {PAGE_SERVER_PIPE_BYTES}-byte pipe for the lazy page server can be made"),
        ),
        Ok(size) => (
            false,
            format!(
                "the lazy page server needs a {PAGE_SERVER_PIPE_BYTES}-byte pipe, and only {size} bytes were granted"
            ),
        ),
        Err(e) => {
            let limit = pipe_max.map_or_else(String::new, |m| format!(" (fs.pipe-max-size = {m})"));
            (
                false,
                format!(
                    "the lazy page server needs a {PAGE_SERVER_PIPE_BYTES}-byte pipe, above this host's limit{limit} without CAP_SYS_RESOURCE: F_SETPIPE_SZ: {}; CRIU's page server would then fail with `page-pipe: tee: 65536: Operation not permitted`",
                    e.desc()
                ),
            )
        }
    };
    FeatureCheck {
        name: LAZY_PAGE_SERVER.to_string(),
        supported,
        known: true,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_resize_names_the_limit_and_the_criu_symptom() {
        let c = interpret_pipe_resize(Err(nix::errno::Errno::EPERM), Some(1_048_576));
        assert!(!c.supported && c.known);
        assert_eq!(c.name, "lazy_page_server");
        assert!(
            c.message.contains("fs.pipe-max-size = 1048576"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("Operation not permitted"),
            "{}",
            c.message
        );
        assert!(c.message.contains("CAP_SYS_RESOURCE"), "{}", c.message);
    }

    #[test]
    fn granted_resize_is_supported_and_a_short_one_is_not() {
        assert!(interpret_pipe_resize(Ok(PAGE_SERVER_PIPE_BYTES), None).supported);
        // The kernel rounds up to a power of two of pages.
        assert!(interpret_pipe_resize(Ok(4 << 20), None).supported);
        let short = interpret_pipe_resize(Ok(65_536), None);
        assert!(!short.supported);
        assert!(short.message.contains("65536 bytes"), "{}", short.message);
    }

    #[test]
    fn the_probe_agrees_with_this_process_capabilities() {
        // CAP_SYS_RESOURCE (bit 24) lifts fs.pipe-max-size; without it the
        // limit decides. Either way the probe must say what the kernel does.
        let caps = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let max = read_pipe_max_size().unwrap_or(0);
        let expected =
            caps & (1 << 24) != 0 || max >= u64::try_from(PAGE_SERVER_PIPE_BYTES).unwrap_or(0);
        assert_eq!(lazy_page_server().supported, expected);
    }
}
