//! Hand-written prost messages for CRIU's `images/rpc.proto` (proto2).
//!
//! Field numbers follow CRIU 4.1.1's `images/rpc.proto` (why they are typed
//! by hand: docs/architecture.md, Decisions). `optional`
//! fields are `Option<T>`; `required` scalars are always put on the wire
//! (notably `CriuOpts::images_dir_fd`, which CRIU's C unpacker insists on).

#![allow(missing_docs)] // field docs live in criu.md; names mirror rpc.proto

/// Request types (`criu_req_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuReqType {
    Empty = 0,
    Dump = 1,
    Restore = 2,
    Check = 3,
    PreDump = 4,
    PageServer = 5,
    Notify = 6,
    CpuinfoDump = 7,
    CpuinfoCheck = 8,
    FeatureCheck = 9,
    Version = 10,
    WaitPid = 11,
    PageServerChld = 12,
    SinglePreDump = 13,
}

impl CriuReqType {
    /// Name as in rpc.proto (`DUMP`, `RESTORE`, ...).
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }

    /// Name for a raw wire value; `UNKNOWN` for values this build does not know.
    pub fn name_of(raw: i32) -> String {
        match Self::try_from(raw) {
            Ok(t) => t.as_str_name().to_string(),
            Err(_) => format!("UNKNOWN({raw})"),
        }
    }

    fn as_str_name(self) -> &'static str {
        match self {
            Self::Empty => "EMPTY",
            Self::Dump => "DUMP",
            Self::Restore => "RESTORE",
            Self::Check => "CHECK",
            Self::PreDump => "PRE_DUMP",
            Self::PageServer => "PAGE_SERVER",
            Self::Notify => "NOTIFY",
            Self::CpuinfoDump => "CPUINFO_DUMP",
            Self::CpuinfoCheck => "CPUINFO_CHECK",
            Self::FeatureCheck => "FEATURE_CHECK",
            Self::Version => "VERSION",
            Self::WaitPid => "WAIT_PID",
            Self::PageServerChld => "PAGE_SERVER_CHLD",
            Self::SinglePreDump => "SINGLE_PRE_DUMP",
        }
    }
}

/// `criu_cg_mode`. RPC numbers, not CRIU's internal bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuCgMode {
    Ignore = 0,
    CgNone = 1,
    Props = 2,
    Soft = 3,
    Full = 4,
    Strict = 5,
    Default = 6,
}

/// `criu_network_lock_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuNetworkLockMethod {
    Iptables = 1,
    Nftables = 2,
    Skip = 3,
}

/// `criu_pre_dump_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuPreDumpMode {
    Splice = 1,
    VmRead = 2,
}

/// `criu_page_server_info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuPageServerInfo {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub port: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub pid: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub fd: Option<i32>,
}

/// `criu_veth_pair` (deprecated in CRIU in favour of `external`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuVethPair {
    #[prost(string, required, tag = "1")]
    pub if_in: String,
    #[prost(string, required, tag = "2")]
    pub if_out: String,
}

/// `ext_mount_map`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExtMountMap {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub val: String,
}

/// `join_namespace`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JoinNamespace {
    #[prost(string, required, tag = "1")]
    pub ns: String,
    #[prost(string, required, tag = "2")]
    pub ns_file: String,
    #[prost(string, optional, tag = "3")]
    pub extra_opt: Option<String>,
}

/// `inherit_fd`: `fd` is a number inside the criu process.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InheritFd {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(int32, required, tag = "2")]
    pub fd: i32,
}

/// `cgroup_root`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CgroupRoot {
    #[prost(string, optional, tag = "1")]
    pub ctrl: Option<String>,
    #[prost(string, required, tag = "2")]
    pub path: String,
}

/// `unix_sk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixSk {
    #[prost(uint32, required, tag = "1")]
    pub inode: u32,
}

/// `criu_opts`. `Default` gives `images_dir_fd = -1` (the proto2 default).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuOpts {
    #[prost(int32, required, tag = "1", default = "-1")]
    pub images_dir_fd: i32,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
    #[prost(bool, optional, tag = "3")]
    pub leave_running: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub ext_unix_sk: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub tcp_established: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub evasive_devices: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub shell_job: Option<bool>,
    #[prost(bool, optional, tag = "8")]
    pub file_locks: Option<bool>,
    #[prost(int32, optional, tag = "9", default = "2")]
    pub log_level: Option<i32>,
    #[prost(string, optional, tag = "10")]
    pub log_file: Option<String>,
    #[prost(message, optional, tag = "11")]
    pub ps: Option<CriuPageServerInfo>,
    #[prost(bool, optional, tag = "12")]
    pub notify_scripts: Option<bool>,
    #[prost(string, optional, tag = "13")]
    pub root: Option<String>,
    #[prost(string, optional, tag = "14")]
    pub parent_img: Option<String>,
    #[prost(bool, optional, tag = "15")]
    pub track_mem: Option<bool>,
    #[prost(bool, optional, tag = "16")]
    pub auto_dedup: Option<bool>,
    #[prost(int32, optional, tag = "17")]
    pub work_dir_fd: Option<i32>,
    #[prost(bool, optional, tag = "18")]
    pub link_remap: Option<bool>,
    #[prost(message, repeated, tag = "19")]
    pub veths: Vec<CriuVethPair>,
    #[prost(uint32, optional, tag = "20", default = "4294967295")]
    pub cpu_cap: Option<u32>,
    #[prost(bool, optional, tag = "21")]
    pub force_irmap: Option<bool>,
    #[prost(string, repeated, tag = "22")]
    pub exec_cmd: Vec<String>,
    #[prost(message, repeated, tag = "23")]
    pub ext_mnt: Vec<ExtMountMap>,
    #[prost(bool, optional, tag = "24")]
    pub manage_cgroups: Option<bool>,
    #[prost(message, repeated, tag = "25")]
    pub cg_root: Vec<CgroupRoot>,
    #[prost(bool, optional, tag = "26")]
    pub rst_sibling: Option<bool>,
    #[prost(message, repeated, tag = "27")]
    pub inherit_fd: Vec<InheritFd>,
    #[prost(bool, optional, tag = "28")]
    pub auto_ext_mnt: Option<bool>,
    #[prost(bool, optional, tag = "29")]
    pub ext_sharing: Option<bool>,
    #[prost(bool, optional, tag = "30")]
    pub ext_masters: Option<bool>,
    #[prost(string, repeated, tag = "31")]
    pub skip_mnt: Vec<String>,
    #[prost(string, repeated, tag = "32")]
    pub enable_fs: Vec<String>,
    #[prost(message, repeated, tag = "33")]
    pub unix_sk_ino: Vec<UnixSk>,
    #[prost(enumeration = "CriuCgMode", optional, tag = "34")]
    pub manage_cgroups_mode: Option<i32>,
    #[prost(uint32, optional, tag = "35", default = "1048576")]
    pub ghost_limit: Option<u32>,
    #[prost(string, repeated, tag = "36")]
    pub irmap_scan_paths: Vec<String>,
    #[prost(string, repeated, tag = "37")]
    pub external: Vec<String>,
    #[prost(uint32, optional, tag = "38")]
    pub empty_ns: Option<u32>,
    #[prost(message, repeated, tag = "39")]
    pub join_ns: Vec<JoinNamespace>,
    #[prost(string, optional, tag = "41")]
    pub cgroup_props: Option<String>,
    #[prost(string, optional, tag = "42")]
    pub cgroup_props_file: Option<String>,
    #[prost(string, repeated, tag = "43")]
    pub cgroup_dump_controller: Vec<String>,
    #[prost(string, optional, tag = "44")]
    pub freeze_cgroup: Option<String>,
    #[prost(uint32, optional, tag = "45")]
    pub timeout: Option<u32>,
    #[prost(bool, optional, tag = "46")]
    pub tcp_skip_in_flight: Option<bool>,
    #[prost(bool, optional, tag = "47")]
    pub weak_sysctls: Option<bool>,
    #[prost(bool, optional, tag = "48")]
    pub lazy_pages: Option<bool>,
    #[prost(int32, optional, tag = "49")]
    pub status_fd: Option<i32>,
    #[prost(bool, optional, tag = "50")]
    pub orphan_pts_master: Option<bool>,
    #[prost(string, optional, tag = "51")]
    pub config_file: Option<String>,
    #[prost(bool, optional, tag = "52")]
    pub tcp_close: Option<bool>,
    #[prost(string, optional, tag = "53")]
    pub lsm_profile: Option<String>,
    #[prost(string, optional, tag = "54")]
    pub tls_cacert: Option<String>,
    #[prost(string, optional, tag = "55")]
    pub tls_cacrl: Option<String>,
    #[prost(string, optional, tag = "56")]
    pub tls_cert: Option<String>,
    #[prost(string, optional, tag = "57")]
    pub tls_key: Option<String>,
    #[prost(bool, optional, tag = "58")]
    pub tls: Option<bool>,
    #[prost(bool, optional, tag = "59")]
    pub tls_no_cn_verify: Option<bool>,
    #[prost(string, optional, tag = "60")]
    pub cgroup_yard: Option<String>,
    #[prost(
        enumeration = "CriuPreDumpMode",
        optional,
        tag = "61",
        default = "Splice"
    )]
    pub pre_dump_mode: Option<i32>,
    #[prost(int32, optional, tag = "62")]
    pub pidfd_store_sk: Option<i32>,
    #[prost(string, optional, tag = "63")]
    pub lsm_mount_context: Option<String>,
    #[prost(
        enumeration = "CriuNetworkLockMethod",
        optional,
        tag = "64",
        default = "Iptables"
    )]
    pub network_lock: Option<i32>,
    #[prost(bool, optional, tag = "65")]
    pub mntns_compat_mode: Option<bool>,
    #[prost(bool, optional, tag = "66")]
    pub skip_file_rwx_check: Option<bool>,
    #[prost(bool, optional, tag = "67")]
    pub unprivileged: Option<bool>,
    #[prost(string, optional, tag = "68")]
    pub images_dir: Option<String>,
    #[prost(bool, optional, tag = "69")]
    pub leave_stopped: Option<bool>,
    #[prost(bool, optional, tag = "70")]
    pub display_stats: Option<bool>,
    #[prost(bool, optional, tag = "71")]
    pub log_to_stderr: Option<bool>,
}

/// `criu_dump_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuDumpResp {
    #[prost(bool, optional, tag = "1")]
    pub restored: Option<bool>,
}

/// `criu_restore_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuRestoreResp {
    #[prost(int32, required, tag = "1")]
    pub pid: i32,
}

/// `criu_notify`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuNotify {
    #[prost(string, optional, tag = "1")]
    pub script: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub pid: Option<i32>,
}

/// `criu_features`: set a field to `Some(true)` to have it probed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuFeatures {
    #[prost(bool, optional, tag = "1")]
    pub mem_track: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub lazy_pages: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub pidfd_store: Option<bool>,
}

/// `criu_req`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuReq {
    #[prost(enumeration = "CriuReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub opts: Option<CriuOpts>,
    #[prost(bool, optional, tag = "3")]
    pub notify_success: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub keep_open: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub features: Option<CriuFeatures>,
    #[prost(uint32, optional, tag = "6")]
    pub pid: Option<u32>,
}

impl CriuReq {
    /// A request of `kind` with nothing else set.
    pub fn new(kind: CriuReqType) -> Self {
        Self {
            r#type: kind as i32,
            ..Self::default()
        }
    }

    /// A request of `kind` carrying `opts`.
    pub fn with_opts(kind: CriuReqType, opts: CriuOpts) -> Self {
        Self {
            r#type: kind as i32,
            opts: Some(opts),
            ..Self::default()
        }
    }
}

/// `criu_resp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuResp {
    #[prost(enumeration = "CriuReqType", required, tag = "1")]
    pub r#type: i32,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(message, optional, tag = "3")]
    pub dump: Option<CriuDumpResp>,
    #[prost(message, optional, tag = "4")]
    pub restore: Option<CriuRestoreResp>,
    #[prost(message, optional, tag = "5")]
    pub notify: Option<CriuNotify>,
    #[prost(message, optional, tag = "6")]
    pub ps: Option<CriuPageServerInfo>,
    #[prost(int32, optional, tag = "7")]
    pub cr_errno: Option<i32>,
    #[prost(message, optional, tag = "8")]
    pub features: Option<CriuFeatures>,
    #[prost(string, optional, tag = "9")]
    pub cr_errmsg: Option<String>,
    #[prost(message, optional, tag = "10")]
    pub version: Option<CriuVersion>,
    #[prost(int32, optional, tag = "11")]
    pub status: Option<i32>,
}

/// `criu_version` (answer to VERSION).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CriuVersion {
    #[prost(int32, required, tag = "1")]
    pub major_number: i32,
    #[prost(int32, required, tag = "2")]
    pub minor_number: i32,
    #[prost(string, optional, tag = "3")]
    pub gitid: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub sublevel: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub extra: Option<i32>,
    #[prost(string, optional, tag = "6")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn default_opts_always_carry_images_dir_fd() {
        let opts = CriuOpts::default();
        assert_eq!(opts.images_dir_fd, -1);
        // tag 1 varint, -1 as a 10-byte two's-complement varint
        let bytes = opts.encode_to_vec();
        assert_eq!(
            bytes,
            [
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
    }

    #[test]
    fn required_zero_values_are_encoded() {
        // type EMPTY (0) is required, so it must still be on the wire.
        let req = CriuReq::new(CriuReqType::Empty);
        assert_eq!(req.encode_to_vec(), [0x08, 0x00]);
        let opts = CriuOpts {
            images_dir_fd: 0,
            ..CriuOpts::default()
        };
        assert_eq!(opts.encode_to_vec(), [0x08, 0x00]);
    }

    #[test]
    fn dump_request_bytes() {
        let opts = CriuOpts {
            images_dir_fd: 5,
            pid: Some(42),
            leave_running: Some(false),
            log_level: Some(4),
            log_file: Some("d.log".into()),
            notify_scripts: Some(true),
            network_lock: Some(CriuNetworkLockMethod::Nftables as i32),
            ..CriuOpts::default()
        };
        let req = CriuReq::with_opts(CriuReqType::Dump, opts);
        let bytes = req.encode_to_vec();
        let want_opts: Vec<u8> = vec![
            0x08, 0x05, // images_dir_fd = 5
            0x10, 0x2a, // pid = 42
            0x18, 0x00, // leave_running = false (present)
            0x48, 0x04, // log_level = 4
            0x52, 0x05, b'd', b'.', b'l', b'o', b'g', // log_file
            0x60, 0x01, // notify_scripts
            0x80, 0x04, 0x02, // tag 64 varint: network_lock = NFTABLES
        ];
        let mut want = vec![0x08, 0x01, 0x12, want_opts.len() as u8];
        want.extend_from_slice(&want_opts);
        assert_eq!(bytes, want);
        let back = CriuReq::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn notify_ack_bytes() {
        let req = CriuReq {
            notify_success: Some(true),
            ..CriuReq::new(CriuReqType::Notify)
        };
        assert_eq!(req.encode_to_vec(), [0x08, 0x06, 0x18, 0x01]);
    }

    #[test]
    fn decode_hand_built_response() {
        // type=RESTORE, success=true, restore{pid=1234}, cr_errmsg="x"
        let bytes = [
            0x08, 0x02, 0x10, 0x01, 0x22, 0x03, 0x08, 0xd2, 0x09, 0x4a, 0x01, b'x',
        ];
        let resp = CriuResp::decode(&bytes[..]).unwrap();
        assert_eq!(resp.r#type, CriuReqType::Restore as i32);
        assert!(resp.success);
        assert_eq!(resp.restore.as_ref().map(|r| r.pid), Some(1234));
        assert_eq!(resp.cr_errmsg.as_deref(), Some("x"));
        assert_eq!(resp.cr_errno, None);
    }

    #[test]
    fn decode_version_response() {
        let v = CriuVersion {
            major_number: 4,
            minor_number: 1,
            gitid: None,
            sublevel: Some(1),
            extra: None,
            name: Some("CRIUTIBILITY".into()),
        };
        let resp = CriuResp {
            r#type: CriuReqType::Version as i32,
            success: true,
            version: Some(v.clone()),
            ..CriuResp::default()
        };
        let back = CriuResp::decode(resp.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.version, Some(v));
    }

    #[test]
    fn unknown_type_name() {
        assert_eq!(CriuReqType::name_of(1), "DUMP");
        assert_eq!(CriuReqType::name_of(99), "UNKNOWN(99)");
    }
}
