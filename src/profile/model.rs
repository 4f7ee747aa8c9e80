//! The profile model of `spec/profile.md`, version 1: every table and key,
//! with its type, default and CRIU option. Declared once with `section!`;
//! decoding, `explain`, the JSON Schema and flattening all come from here.

use serde_json::{Value as Json, json};

use crate::profile::node::{Kind, Node};
use crate::profile::section::{FieldMeta, section};
use crate::profile::value::{
    Cx, Duration, Fraction, Host, Int, IpLit, LsmProfile, Name, PathValue, Port, Size, Spanned,
    Text, Value, VersionReq, string_enum,
};

string_enum!(
    /// What `ckptctl apply` does.
    Action { Checkpoint = "checkpoint", Restore = "restore", Migrate = "migrate" }
);
string_enum!(
    /// How CRIU locks the network during a dump.
    NetworkLock { Iptables = "iptables", Nftables = "nftables", Skip = "skip" }
);
string_enum!(
    /// How pre-dump rounds read memory.
    PreDumpMode { Splice = "splice", Read = "read" }
);
string_enum!(
    /// CRIU's `--manage-cgroups` mode.
    CgroupMode {
        Soft = "soft", Full = "full", Strict = "strict", Ignore = "ignore",
        Props = "props", None = "none", Default = "default",
    }
);
string_enum!(
    /// Namespaces CRIU may leave empty.
    EmptyNs { Net = "net" }
);
string_enum!(
    /// How images reach the destination of a migration.
    ImagesMode { Shared = "shared", Send = "send" }
);
string_enum!(
    /// The OCI runtime that owns a `[target] container`.
    Runtime { Runc = "runc" }
);
string_enum!(
    /// Whether CRIU reads host configuration files.
    HostConfig { Ignore = "ignore", Inherit = "inherit" }
);

/// The profile format version; only 1 exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatVersion(pub i64);

impl Value for FormatVersion {
    fn kind() -> &'static str {
        "integer (1)"
    }
    fn decode(node: &Node, key: &str, cx: &mut Cx<'_>) -> Option<Self> {
        match node.kind {
            Kind::Int(1) => Some(FormatVersion(1)),
            Kind::Int(n) => {
                cx.invalid(
                    "profile::unsupported-version",
                    key,
                    node.span,
                    format!("unsupported profile format version {n}"),
                    Some("this ckptctl reads `version = 1`".into()),
                );
                None
            }
            _ => {
                cx.type_error(key, node, "the integer 1");
                None
            }
        }
    }
    fn to_json(&self) -> Json {
        json!(self.0)
    }
    fn schema() -> Json {
        json!({"type": "integer", "const": 1})
    }
}

section! {
    /// A ckptctl profile: what to checkpoint, restore or migrate, and how.
    implied Profile {
        /// Format version; only 1 exists.
        version: FormatVersion => "";
        /// Profile name: lowercase letters, digits, `.`, `_`, `-`; at most 63 characters.
        name: Name => "";
        /// Free text, shown in reviews and plans.
        description: String => "";
        /// What `ckptctl apply` does: `checkpoint`, `restore` or `migrate`.
        action: Action => "";
        /// Path (relative to this file) of a base profile. Tables merge key by key, this file wins, arrays replace.
        extends: PathValue => "";
        /// The process tree to checkpoint (checkpoint, migrate).
        target: Target => "";
        /// Images and work directories, logging.
        images: Images => "";
        /// Options CRIU needs on both sides: sent to dump and restore alike.
        process: Process => "";
        /// Dump-side options.
        checkpoint: Checkpoint => "";
        /// Restore-side options.
        restore: Restore => "";
        /// Cgroup handling.
        cgroups: Cgroups => "";
        /// Push pages to a remote page server (pre-copy, stop-and-copy).
        page_server: PageServer => "";
        /// Post-copy: restore before all memory has arrived.
        lazy_pages: LazyPages => "";
        /// Two-host migration (only for `action = "migrate"`).
        migration: Migration => "";
        /// How CRIU itself is run.
        criu: Criu => "";
    }
}

section! {
    /// The process tree to checkpoint: a pid, a pidfile, or a container. At most one of `pid` and `pidfile`; `apply --pid N` overrides both; `container` excludes all three.
    optional Target {
        /// Root of the process tree.
        pid: Int<1, 2147483647> => "-t/--tree, RPC pid";
        /// File holding the pid (relative to the profile's folder).
        pidfile: PathValue => "-t/--tree, RPC pid (read from the file at apply time)";
        /// ID of a container owned by `runtime`: the container to checkpoint, or (restore) the ID to restore it as.
        container: String => "the runtime's <container-id> (CRIU gets the container's init pid from it)";
        /// The OCI runtime that owns the container; only `runc` (also when absent).
        runtime: Runtime => "the runtime ckptctl runs (it starts CRIU itself)";
        /// The runtime's state directory (`runc --root`); default: the runtime's own.
        runtime_root: PathValue => "runc --root";
    }
}

section! {
    /// Images and work directories.
    optional Images {
        /// Images directory. Created 0700 by apply.
        dir: PathValue => "-D/--images-dir, RPC images_dir_fd";
        /// Logs, stats and the lazy-pages socket. Defaults to `dir`.
        work_dir: PathValue => "-W/--work-dir, RPC work_dir_fd";
        /// Parent images for an incremental dump, relative to `dir` as CRIU wants (implies track_mem).
        parent: String => "--prev-images-dir, RPC parent_img (+ track_mem)";
        /// CRIU verbosity 1..4 (0 is refused: CRIU would record no error text).
        log_level: Int<0, 4> => "-v/--verbosity, RPC log_level" = Int(4);
    }
}

section! {
    /// Options CRIU needs on both sides; sent to dump and restore so they cannot disagree.
    implied Process {
        /// Checkpoint established TCP connections.
        tcp_established: bool => "--tcp-established, RPC tcp_established" = false;
        /// Allow external unix sockets.
        ext_unix_sk: bool => "--ext-unix-sk, RPC ext_unix_sk" = false;
        /// The tree is a shell job (session and terminal outside of it).
        shell_job: bool => "--shell-job, RPC shell_job" = false;
        /// Checkpoint file locks.
        file_locks: bool => "--file-locks, RPC file_locks" = false;
        /// Remap unlinked but open files with link-remap.
        link_remap: bool => "--link-remap, RPC link_remap" = false;
        /// Raw CRIU external resource specs such as `mnt[/data]:data`.
        external: Vec<Spanned<Text>> => "--external, RPC external" = Vec::new();
    }
}

section! {
    /// Dump-side options.
    implied Checkpoint {
        /// Leave the tree running after the dump.
        leave_running: bool => "-R/--leave-running, RPC leave_running" = false;
        /// Skip in-flight TCP connections.
        tcp_skip_in_flight: bool => "--skip-in-flight, RPC tcp_skip_in_flight" = false;
        /// Deduplicate against the parent images (only with a parent or pre_dump).
        auto_dedup: bool => "--auto-dedup, RPC auto_dedup" = false;
        /// Largest deleted file kept as a ghost (at most 4294967295 bytes, 4 GiB - 1: the RPC field is 32-bit).
        ghost_limit: Size => "--ghost-limit, RPC ghost_limit" = Size(1 << 20);
        /// How long CRIU may wait to freeze the tree.
        timeout: Duration => "--timeout, RPC timeout" = Duration(10);
        /// How the network is locked during the dump.
        network_lock: NetworkLock => "--network-lock, RPC network_lock" = NetworkLock::Iptables;
        /// Namespaces CRIU leaves empty; only `net` is allowed.
        empty_ns: Vec<Spanned<EmptyNs>> => "--empty-ns net, RPC empty_ns = CLONE_NEWNET" = Vec::new();
        /// Freeze the tree with this cgroup's freezer.
        freeze_cgroup: PathValue => "--freeze-cgroup, RPC freeze_cgroup";
        /// Iterative pre-copy rounds before the final dump.
        pre_dump: PreDump => "pre-dump / RPC PRE_DUMP, SINGLE_PRE_DUMP";
    }
}

section! {
    /// Iterative pre-copy: rounds `dir/pre-N` chained by parent; the final dump uses the last one.
    optional PreDump {
        /// Most pre-dump rounds before the final dump.
        iterations: Int<1, 64> => "" = Int(3);
        /// How pages are read.
        mode: PreDumpMode => "--pre-dump-mode, RPC pre_dump_mode" = PreDumpMode::Splice;
        /// Stop early when a round writes at most this many pages.
        min_pages: Int<0, 9223372036854775807> => "" = Int(64);
        /// Stop early when a round writes more than (1 + this) times the previous round.
        max_growth: Fraction => "" = Fraction(0.10);
    }
}

section! {
    /// Restore-side options.
    implied Restore {
        /// Close established TCP connections on restore.
        tcp_close: bool => "--tcp-close, RPC tcp_close" = false;
        /// Veth pairs to create: the interface inside the namespace and the host side.
        veth_pairs: Vec<Spanned<VethPair>> => "--veth-pair IN=OUT, RPC veths" = Vec::new();
        /// Root directory to restore into.
        root: PathValue => "-r/--root, RPC root";
        /// Where apply writes the restored root pid.
        pidfile: PathValue => "(ckptctl writes it)";
        /// Punch holes in images as they are read: images become single-use.
        auto_dedup: bool => "--auto-dedup, RPC auto_dedup" = false;
        /// LSM profile for the restored tree, `TYPE:NAME`.
        lsm_profile: LsmProfile => "--lsm-profile, RPC lsm_profile";
        /// Use the older mount namespace restore.
        mntns_compat_mode: bool => "--mntns-compat-mode, RPC mntns_compat_mode" = false;
        /// OCI bundle to restore a container into; required when `target.container` is set, refused otherwise.
        bundle: PathValue => "runc restore --bundle (the runtime sets CRIU's root from it)";
    }
}

section! {
    /// One veth pair.
    optional VethPair {
        /// Interface name inside the restored network namespace.
        inside: String => "IN of --veth-pair IN=OUT";
        /// Host-side interface name.
        outside: String => "OUT of --veth-pair IN=OUT";
    }
}

section! {
    /// Cgroup handling.
    implied Cgroups {
        /// CRIU's cgroup mode.
        mode: CgroupMode => "--manage-cgroups=MODE, RPC manage_cgroups_mode" = CgroupMode::Soft;
        /// Cgroup roots: `{ controller = "cpu", path = "/x" }`, controller optional.
        roots: Vec<Spanned<CgroupRoot>> => "--cgroup-root [CTRL:]PATH, RPC cg_root" = Vec::new();
        /// Controllers to dump.
        dump_controllers: Vec<Spanned<Text>> => "--cgroup-dump-controller, RPC cgroup_dump_controller" = Vec::new();
        /// Cgroup properties (inline).
        props: String => "--cgroup-props, RPC cgroup_props";
        /// Cgroup properties file.
        props_file: PathValue => "--cgroup-props-file, RPC cgroup_props_file";
        /// Cgroup yard.
        yard: PathValue => "--cgroup-yard, RPC cgroup_yard";
    }
}

section! {
    /// One cgroup root.
    optional CgroupRoot {
        /// Controller name (all controllers when absent).
        controller: Text => "CTRL of --cgroup-root";
        /// Root path.
        path: Text => "PATH of --cgroup-root";
    }
}

section! {
    /// Where the destination's page server listens.
    optional PageServer {
        /// Address or host name of the page server.
        address: Host => "--page-server --address, RPC ps.address";
        /// Its port.
        port: Port => "--port, RPC ps.port";
        /// TLS for the page server and the migration control connection.
        tls: Tls => "--tls, RPC tls";
    }
}

section! {
    /// TLS files.
    optional Tls {
        /// CA certificate.
        ca_cert: PathValue => "--tls-cacert, RPC tls_cacert";
        /// CA revocation list.
        ca_crl: PathValue => "--tls-cacrl, RPC tls_cacrl";
        /// Certificate (with `key`).
        cert: PathValue => "--tls-cert, RPC tls_cert";
        /// Private key (with `cert`).
        key: PathValue => "--tls-key, RPC tls_key";
        /// Do not verify the peer's common name.
        no_cn_verify: bool => "--tls-no-cn-verify, RPC tls_no_cn_verify" = false;
    }
}

section! {
    /// Post-copy migration.
    optional LazyPages {
        /// Restore before all memory has arrived (userfaultfd).
        enabled: bool => "--lazy-pages, RPC lazy_pages" = false;
        /// Where the checkpoint side serves pages; absent means local lazy restore.
        address: IpLit => "lazy-pages --page-server --address";
        /// Port of the lazy page server.
        port: Port => "--port, RPC ps.port";
    }
}

section! {
    /// Two-host migration.
    optional Migration {
        /// The destination host.
        destination: Host => "";
        /// Port of the destination's control listener.
        control_port: Port => "";
        /// `shared`: both hosts see images.dir; `send`: the source sends images over the control connection.
        images: ImagesMode => "" = ImagesMode::Shared;
        /// Longest wait for the other side.
        step_timeout: Duration => "" = Duration(60);
    }
}

section! {
    /// How CRIU runs.
    implied Criu {
        /// `ignore` runs CRIU with --no-default-config; `inherit` lets host config files apply.
        host_config: HostConfig => "--no-default-config (ignore)" = HostConfig::Ignore;
        /// Refuse to run on an older CRIU.
        min_version: VersionReq => "";
    }
}

/// Where a key of this name exists in the profile (for misplaced keys).
pub fn locate_key(name: &str) -> Option<String> {
    let mut found = Vec::new();
    walk(Profile::FIELDS, "", &mut |path, f| {
        if f.name == name && path.contains('.') {
            found.push(
                path.rsplit_once('.')
                    .map(|(t, _)| format!("[{t}]"))
                    .unwrap_or_default(),
            );
        }
    });
    if found.is_empty() {
        None
    } else {
        Some(found.join(" or "))
    }
}

/// Visit every key of the model with its dotted path.
pub fn walk(fields: &'static [FieldMeta], prefix: &str, f: &mut dyn FnMut(&str, &FieldMeta)) {
    for meta in fields {
        let path = crate::profile::section::join(prefix, meta.name);
        f(&path, meta);
        if let Some(sub) = (meta.sub)() {
            walk(sub, &path, f);
        }
    }
}

/// Look up a key's metadata by dotted path (`checkpoint.pre_dump.mode`;
/// array indices are ignored).
pub fn find_key(path: &str) -> Option<FieldMeta> {
    let mut fields: &'static [FieldMeta] = Profile::FIELDS;
    let mut found = None;
    for part in path.split('.') {
        let part = part.split('[').next().unwrap_or(part);
        let meta = fields.iter().find(|f| f.name == part)?;
        found = Some(*meta);
        fields = (meta.sub)().unwrap_or(&[]);
    }
    found
}

impl Profile {
    /// The effective action (validation guarantees it is set).
    pub fn action_or_default(&self) -> Action {
        self.action.as_ref().map_or(Action::Checkpoint, |a| a.value)
    }

    /// Every resolved key: explicit values and defaults.
    pub fn resolved(&self) -> Vec<crate::profile::section::Resolved> {
        let mut out = Vec::new();
        crate::profile::section::Section::flatten(self, "", &mut out);
        out
    }

    /// The checkpoint table (defaults when absent).
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }
    /// The restore table (defaults when absent).
    pub fn restore(&self) -> Restore {
        self.restore
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }
    /// The process table (defaults when absent).
    pub fn process(&self) -> Process {
        self.process
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }
    /// The cgroups table (defaults when absent).
    pub fn cgroups(&self) -> Cgroups {
        self.cgroups
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }
    /// The criu table (defaults when absent).
    pub fn criu(&self) -> Criu {
        self.criu
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }
    /// The images table (empty when absent; validation reports that).
    pub fn images(&self) -> Images {
        self.images
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }
}
