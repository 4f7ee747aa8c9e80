//! Unit tests of the parent module.

use super::*;

#[test]
fn a_peer_that_does_not_read_cannot_hold_a_send_past_its_limit() {
    let l = listen("127.0.0.1", 0).unwrap();
    let port = l.local_addr().unwrap().port();
    let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    let (_peer, _) = l.accept().unwrap(); // accepted, never read
    c.write_limit = Duration::from_millis(600);
    let big = Msg::Error {
        message: "x".repeat(64 << 20),
        exit: Exit::CriuFailed,
    };
    // Without the limit this send would block for good.
    let e = c.send(&big).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
}

#[test]
fn messages_round_trip_over_tcp() {
    let l = listen("127.0.0.1", 0).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut c = accept(&l, Duration::from_secs(5)).unwrap();
        let m = c.recv(Duration::from_secs(5), "hello").unwrap();
        c.send(&Msg::Ready {
            page_server_port: Some(1234),
        })
        .unwrap();
        m
    });
    let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    let hello = Msg::Hello {
        protocol: PROTOCOL,
        profile_digest: "ab".into(),
        criu_version: "4.1.1".into(),
        criu_version_number: 40101,
        role: Role::Source,
        ckptctl: "0".into(),
        cpuinfo: None,
        key_digests: Default::default(),
    };
    c.send(&hello).unwrap();
    assert_eq!(
        c.recv(Duration::from_secs(5), "ready").unwrap(),
        Msg::Ready {
            page_server_port: Some(1234)
        }
    );
    assert_eq!(t.join().unwrap(), hello);
    let s = serde_json::to_string(&Msg::Error {
        message: "x".into(),
        exit: Exit::CriuFailed,
    })
    .unwrap();
    assert_eq!(s, r#"{"type":"error","message":"x","exit":3}"#);
}

#[test]
fn waits_are_bounded() {
    let l = listen("127.0.0.1", 0).unwrap();
    let port = l.local_addr().unwrap().port();
    assert!(matches!(
        accept(&l, Duration::from_millis(300)),
        Err(ConnError::Timeout(..))
    ));
    let _keep = std::thread::spawn(move || {
        let c = accept(&l, Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(c);
    });
    let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    assert!(matches!(
        c.recv(Duration::from_millis(300), "ready"),
        Err(ConnError::Timeout(..))
    ));
}

#[test]
fn long_lines_are_refused_at_the_limit() {
    let l = listen("127.0.0.1", 0).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        // 3 MiB and no newline: the reader stops after the limit.
        let _ = s.write_all(&vec![b'x'; 3 << 20]);
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    let e = c
        .recv_max(Duration::from_secs(5), "dumped", 1 << 20)
        .unwrap_err();
    assert!(matches!(e, ConnError::Bad(_)), "{e}");
    assert!(e.to_string().len() < 400, "{e}");
    t.join().unwrap();
}

#[test]
fn connect_gives_up_after_the_timeout() {
    // Reserve a port and close it so nothing listens there.
    let port = listen("127.0.0.1", 0).unwrap().local_addr().unwrap().port();
    let e = connect("127.0.0.1", port, Duration::from_millis(500)).unwrap_err();
    assert!(matches!(e, ConnError::Timeout(..)), "{e}");
}

// --- TLS -------------------------------------------------------------

use crate::migrate::tls::{TlsMaterial, server_name, testpki};

fn hello() -> Msg {
    Msg::Hello {
        protocol: PROTOCOL,
        profile_digest: "ab".into(),
        criu_version: "4.1.1".into(),
        criu_version_number: 40101,
        role: Role::Source,
        ckptctl: "0".into(),
        cpuinfo: Some("c".repeat(3 << 20)),
        key_digests: Default::default(),
    }
}

/// Destination on a thread with `server` files; returns its listener
/// port and the thread's result (handshake, then hello -> ready).
fn tls_destination(
    server: crate::migrate::tls::TlsFiles,
) -> (u16, std::thread::JoinHandle<Result<Msg, ConnError>>) {
    let cfg = TlsMaterial::load(&server).unwrap().server().unwrap();
    let l = listen("127.0.0.1", 0).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let c = accept(&l, Duration::from_secs(5))?;
        let mut c = c.tls_server(cfg, Duration::from_secs(5))?;
        assert!(c.is_tls());
        let m = c.recv(Duration::from_secs(5), "hello")?;
        c.send(&Msg::Ready {
            page_server_port: Some(7),
        })?;
        c.shutdown();
        Ok(m)
    });
    (port, t)
}

fn tls_source(port: u16, client: crate::migrate::tls::TlsFiles) -> Result<Msg, ConnError> {
    let cfg = TlsMaterial::load(&client).unwrap().client().unwrap();
    let c = connect("127.0.0.1", port, Duration::from_secs(5))?;
    let mut c = c.tls_client(
        cfg,
        server_name("127.0.0.1").unwrap(),
        Duration::from_secs(5),
    )?;
    c.send(&hello())?;
    c.recv(Duration::from_secs(5), "ready")
}

fn tls_error(r: Result<Msg, ConnError>) -> rustls::Error {
    match r {
        Err(ConnError::Tls(e)) => e,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn messages_round_trip_over_mutual_tls() {
    let d = tempfile::tempdir().unwrap();
    let ca = testpki::ca(d.path(), "ca");
    let s = testpki::leaf(d.path(), "ca", "s", "IP:127.0.0.1");
    let c = testpki::leaf(d.path(), "ca", "c", "IP:127.0.0.2");
    let (port, t) = tls_destination(testpki::files(&ca, &s, false));
    let got = tls_source(port, testpki::files(&ca, &c, false)).unwrap();
    assert_eq!(
        got,
        Msg::Ready {
            page_server_port: Some(7)
        }
    );
    assert_eq!(t.join().unwrap().unwrap(), hello());
}

#[test]
fn a_wrong_ca_is_refused_on_both_sides() {
    let d = tempfile::tempdir().unwrap();
    let ca = testpki::ca(d.path(), "ca");
    let other = testpki::ca(d.path(), "other");
    let s = testpki::leaf(d.path(), "ca", "s", "IP:127.0.0.1");
    let stranger = testpki::leaf(d.path(), "other", "x", "IP:127.0.0.2");

    // The source does not trust the destination's CA.
    let (port, t) = tls_destination(testpki::files(&ca, &s, false));
    let e = tls_error(tls_source(port, testpki::files(&other, &stranger, false)));
    assert_eq!(
        crate::migrate::tls::explain(&e).0,
        "page_server.tls.ca_cert",
        "{e}"
    );
    let e = tls_error(t.join().unwrap());
    assert_eq!(
        crate::migrate::tls::explain(&e).0,
        "page_server.tls.cert",
        "{e}"
    );

    // The destination does not trust the source's certificate.
    let (port, t) = tls_destination(testpki::files(&ca, &s, false));
    let e = tls_error(tls_source(port, testpki::files(&ca, &stranger, false)));
    assert_eq!(
        crate::migrate::tls::explain(&e).0,
        "page_server.tls.cert",
        "{e}"
    );
    let e = tls_error(t.join().unwrap());
    assert_eq!(
        crate::migrate::tls::explain(&e).0,
        "page_server.tls.ca_cert",
        "{e}"
    );
}

#[test]
fn a_name_mismatch_is_refused_unless_no_cn_verify() {
    let d = tempfile::tempdir().unwrap();
    let ca = testpki::ca(d.path(), "ca");
    let s = testpki::leaf(d.path(), "ca", "s", "IP:10.9.9.9,DNS:elsewhere.example");
    let c = testpki::leaf(d.path(), "ca", "c", "IP:127.0.0.2");
    let (port, t) = tls_destination(testpki::files(&ca, &s, false));
    let e = tls_error(tls_source(port, testpki::files(&ca, &c, false)));
    let (key, exit, text) = crate::migrate::tls::explain(&e);
    assert_eq!(
        (key, exit),
        ("page_server.tls.cert", crate::failure::Exit::Usage)
    );
    assert!(text.contains("no_cn_verify"), "{text}");
    assert!(t.join().unwrap().is_err());

    let (port, t) = tls_destination(testpki::files(&ca, &s, false));
    let got = tls_source(port, testpki::files(&ca, &c, true)).unwrap();
    assert_eq!(
        got,
        Msg::Ready {
            page_server_port: Some(7)
        }
    );
    assert_eq!(t.join().unwrap().unwrap(), hello());
}

#[test]
fn a_plaintext_client_is_refused_by_a_tls_destination_without_hanging() {
    let d = tempfile::tempdir().unwrap();
    let ca = testpki::ca(d.path(), "ca");
    let s = testpki::leaf(d.path(), "ca", "s", "IP:127.0.0.1");
    let (port, t) = tls_destination(testpki::files(&ca, &s, false));
    let started = Instant::now();
    let mut c = connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    c.send(&hello()).unwrap_or(());
    let r = c.recv(Duration::from_secs(20), "ready");
    assert!(!matches!(r, Ok(_) | Err(ConnError::Timeout(..))), "{r:?}");
    assert!(matches!(t.join().unwrap(), Err(ConnError::Tls(_))));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn listens_only_where_the_profile_says() {
    let l = listen("127.0.0.1", 0).unwrap();
    assert_eq!(l.local_addr().unwrap().ip().to_string(), "127.0.0.1");
    let l = listen("localhost", 0).unwrap();
    assert!(l.local_addr().unwrap().ip().is_loopback());
    // 192.0.2.1 (TEST-NET-1) is nobody's address: no fallback to 0.0.0.0.
    let e = listen("192.0.2.1", 0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
}
