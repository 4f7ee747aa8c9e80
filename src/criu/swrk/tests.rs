//! Unit tests of the parent module.

use super::*;

fn v(major: u32, minor: u32, sublevel: u32, gitid: Option<&str>) -> CriuVersion {
    CriuVersion {
        major,
        minor,
        sublevel,
        gitid: gitid.map(String::from),
        name: None,
    }
}

#[test]
fn version_numbers() {
    assert_eq!(v(4, 1, 1, None).number(), 40101);
    assert_eq!(v(3, 17, 0, None).number(), 31700);
    assert_eq!(v(3, 16, 1, Some("v3.16.1-5-gabc")).number(), 31700);
    assert_eq!(v(4, 1, 1, None).to_string(), "4.1.1");
    assert_eq!(v(4, 2, 0, None).to_string(), "4.2");
    assert!(v(4, 1, 1, None) > v(4, 1, 0, None));
    assert!(v(3, 19, 0, None) < v(4, 0, 0, None));
    assert!(v(4, 1, 1, Some("g")) > v(4, 1, 9, None));
}

#[test]
fn version_from_rpc_and_cli() {
    let r = crate::criu::rpc::CriuVersion {
        major_number: 4,
        minor_number: 1,
        gitid: None,
        sublevel: Some(1),
        extra: None,
        name: Some("CRIUTIBILITY".into()),
    };
    let a = CriuVersion::from_rpc(&r);
    assert_eq!(a.number(), 40101);
    let b = CriuVersion::parse_cli("Version: 4.1.1\n").unwrap();
    assert_eq!(b.number(), 40101);
    let c = CriuVersion::parse_cli("Version: 3.19\nGitID: v3.19-20-g1234\n").unwrap();
    assert_eq!(c.number(), 32000);
    assert!(CriuVersion::parse_cli("garbage").is_none());
}

#[test]
fn expect_success_maps_failure() {
    let resp = CriuResp {
        r#type: CriuReqType::Dump as i32,
        success: false,
        cr_errno: Some(3),
        cr_errmsg: Some("Error (criu/x.c:1): boom\n".into()),
        ..CriuResp::default()
    };
    match expect_success("dump", CriuReqType::Dump, resp) {
        Err(CriuError::Failed {
            cr_errno: Some(3),
            resp_type,
            ..
        }) => {
            assert_eq!(resp_type, "DUMP")
        }
        other => panic!("unexpected {other:?}"),
    }
    let resp = CriuResp {
        r#type: 0,
        success: true,
        ..CriuResp::default()
    };
    assert!(matches!(
        expect_success("dump", CriuReqType::Dump, resp),
        Err(CriuError::Protocol { .. })
    ));
}

#[test]
fn spawn_missing_binary() {
    let e = Swrk::spawn(Path::new("/nonexistent/criu"), &[]).unwrap_err();
    assert!(matches!(e, CriuError::Spawn { .. }), "{e:?}");
}

/// `sh -c SCRIPT x` stands in for criu: it gets `... swrk 3` as `$1 $2`.
fn fake(script: &str) -> Swrk {
    Swrk::spawn(
        Path::new("/bin/sh"),
        &["-c".into(), script.into(), "x".into()],
    )
    .unwrap()
}

#[test]
fn eof_reports_exit_status_and_stderr() {
    let mut s = fake("echo \"args: $*\" >&2; exit 7");
    let e = s.call(&CriuReq::new(CriuReqType::Version), &mut |_| {
        NotifyReply::ok()
    });
    match e {
        Err(CriuError::Died { status, stderr }) => {
            assert_eq!(status.code(), Some(7));
            assert!(stderr.contains("args: swrk 3"), "{stderr}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Further use reports the same death, no panic.
    let again = s.send_only(&CriuReq::new(CriuReqType::Version));
    assert!(matches!(again, Err(CriuError::Died { .. })), "{again:?}");
}

#[test]
fn fd3_is_the_socket_and_client_end_does_not_leak() {
    use std::os::unix::fs::MetadataExt;
    let mut s = fake("for f in /proc/$$/fd/*; do echo \"$f $(readlink $f)\"; done >&2; exit 0");
    let client = match &s.sock {
        Some(fd) => fs_err::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino(),
        None => unreachable!(),
    };
    let e = s.call(&CriuReq::new(CriuReqType::Version), &mut |_| {
        NotifyReply::ok()
    });
    match e {
        Err(CriuError::Died { status, stderr }) => {
            assert_eq!(status.code(), Some(0), "{stderr}");
            assert!(
                stderr.lines().any(|l| l.contains("/fd/3 socket:[")),
                "fd 3 is not a socket: {stderr}"
            );
            assert!(
                !stderr.contains(&format!("socket:[{client}]")),
                "client end leaked: {stderr}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn timeout_kills_child() {
    let mut s = fake("exec sleep 30");
    s.set_timeout(Some(Duration::from_millis(200)));
    let e = s.call(&CriuReq::new(CriuReqType::Version), &mut |_| {
        NotifyReply::ok()
    });
    assert!(matches!(e, Err(CriuError::Timeout { .. })), "{e:?}");
    assert!(s.pid().is_none(), "child must be reaped");
}
