// The body shared by `fuzz_rpc` and the stable-Rust replay in
// `tests/fuzz_replay.rs`: decode arbitrary bytes as one `criu_resp`
// datagram (what `Swrk::recv_message` does with what criu sends), then
// run everything the client does with a response that needs no socket:
// the NOTIFY fields, `expect_success` for every request type (the error
// text and its classification), the VERSION answer and its ordering
// number. Nothing may panic.

use ckptctl::criu::rpc::{CriuReqType, CriuResp};
use ckptctl::criu::swrk::{CriuVersion, expect_success};
use prost::Message;

const KINDS: [CriuReqType; 14] = [
    CriuReqType::Empty,
    CriuReqType::Dump,
    CriuReqType::Restore,
    CriuReqType::Check,
    CriuReqType::PreDump,
    CriuReqType::PageServer,
    CriuReqType::Notify,
    CriuReqType::CpuinfoDump,
    CriuReqType::CpuinfoCheck,
    CriuReqType::FeatureCheck,
    CriuReqType::Version,
    CriuReqType::WaitPid,
    CriuReqType::PageServerChld,
    CriuReqType::SinglePreDump,
];

/// Run one input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(resp) = CriuResp::decode(data) else {
        return;
    };
    let _ = CriuReqType::name_of(resp.r#type);
    let _ = format!("{resp:?}");
    if let Some(n) = &resp.notify {
        let _ = (n.script.as_deref().unwrap_or_default(), n.pid);
    }
    if let Some(v) = &resp.version {
        let v = CriuVersion::from_rpc(v);
        let _ = (v.number(), v.to_string());
        assert_eq!(v.cmp(&v), std::cmp::Ordering::Equal);
    }
    for kind in KINDS {
        match expect_success(kind.name(), kind, resp.clone()) {
            Ok(r) => assert!(r.success && r.r#type == kind as i32),
            Err(e) => {
                let _ = e.to_string();
                let _ = e.known_cause(&[resp.cr_errmsg.as_deref().unwrap_or_default()]);
            }
        }
    }
    // What criu sent, sent back: prost must re-encode it and read it again.
    let again = CriuResp::decode(resp.encode_to_vec().as_slice()).expect("re-encoded response");
    assert_eq!(again, resp);
}
