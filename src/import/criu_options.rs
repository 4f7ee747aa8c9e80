//! The long options CRIU 4.1.1 knows (its `criu --help` and its option
//! table), so that `import` can tell an option with no profile key from one
//! CRIU itself would refuse. A table: one name a line.

/// Every long option name (without `--`). Boolean options also exist with a
/// `no-` prefix.
pub const CRIU_OPTIONS: &[&str] = &[
    "action-script",
    "address",
    "all",
    "auto-dedup",
    "cgroup-dump-controller",
    "cgroup-props",
    "cgroup-props-file",
    "cgroup-root",
    "cgroup-yard",
    "close",
    "config",
    "cpu-cap",
    "daemon",
    "deprecated",
    "display-stats",
    "empty-ns",
    "enable-external-masters",
    "enable-external-sharing",
    "enable-fs",
    "evasive-devices",
    "exec-cmd",
    "experimental",
    "ext-mount-map",
    "ext-unix-sk",
    "external",
    "extra",
    "feature",
    "file-locks",
    "file-validation",
    "force-irmap",
    "freeze-cgroup",
    "ghost-fiemap",
    "ghost-limit",
    "help",
    "images-dir",
    "inherit-fd",
    "irmap-scan-path",
    "join-ns",
    "lazy-pages",
    "leave-running",
    "leave-stopped",
    "libdir",
    "link-remap",
    "log-file",
    "log-pid",
    "lsm-mount-context",
    "lsm-profile",
    "manage-cgroups",
    "mntns-compat-mode",
    "ms",
    "network-lock",
    "no-default-config",
    "page-server",
    "pidfile",
    "port",
    "pre-dump-mode",
    "prev-images-dir",
    "ps-socket",
    "relative-timestamps",
    "remote",
    "restore-detached",
    "restore-sibling",
    "root",
    "shell-job",
    "skip-file-rwx-check",
    "skip-in-flight",
    "skip-mnt",
    "status-fd",
    "stream",
    "tcp-close",
    "tcp-established",
    "timeout",
    "tls",
    "tls-cacert",
    "tls-cacrl",
    "tls-cert",
    "tls-key",
    "tls-no-cn-verify",
    "track-mem",
    "tree",
    "unprivileged",
    "verbosity",
    "version",
    "veth-pair",
    "weak-sysctls",
    "work-dir",
];

/// CRIU's one-letter options (`-o`, `-D`, ...), as a config file may name them.
pub const CRIU_SHORT: &str = "dSsRthDovxVrjJlWLM";

/// True when CRIU would accept `name` as an option: a long name, its `no-`
/// form, a one-letter option, or an unambiguous abbreviation (getopt_long
/// accepts those).
pub fn criu_knows(name: &str) -> bool {
    if name.is_empty() || name.starts_with('-') {
        return false;
    }
    if name.len() == 1 {
        return CRIU_SHORT.contains(name);
    }
    let bare = name.strip_prefix("no-").unwrap_or(name);
    if CRIU_OPTIONS.contains(&name) || CRIU_OPTIONS.contains(&bare) {
        return true;
    }
    CRIU_OPTIONS.iter().filter(|o| o.starts_with(name)).count() == 1
}

#[cfg(test)]
mod tests {
    use super::criu_knows;

    #[test]
    fn known_unknown_and_abbreviated() {
        assert!(criu_knows("leave-running"));
        assert!(criu_knows("no-tcp-established"));
        assert!(criu_knows("o"));
        assert!(criu_knows("leave-run"));
        assert!(!criu_knows("--leave-running"));
        assert!(!criu_knows("leave-runing"));
        assert!(!criu_knows("tls-c")); // ambiguous
    }
}
