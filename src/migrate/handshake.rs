//! The control connection's opening: hello, version and digest checks,
//! and its failures (protocol, connection, TLS, the peer's `error`).

use crate::criu::CriuVersion;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;
use crate::render::Role;

use super::proto::{Conn, ConnError, Msg};
use super::tls;

/// sha256 of the resolved profile (after `extends` and defaults).
pub fn profile_digest(p: &Profile) -> String {
    let v = crate::profile::section::section_json(p);
    crate::digest::sha256_hex(serde_json::to_string(&v).unwrap_or_default().as_bytes())
}

pub(crate) fn hello(p: &Profile, v: &CriuVersion, role: Role) -> Msg {
    Msg::Hello {
        profile_digest: profile_digest(p),
        criu_version: v.to_string(),
        criu_version_number: v.number(),
        role,
        ckptctl: env!("CARGO_PKG_VERSION").to_string(),
        cpuinfo: None,
    }
}

/// Compare the peer's hello with ours: (source's, destination's).
pub(crate) fn check_hello(ours: &Msg, theirs: &Msg, we: Role) -> Result<(), Failure> {
    let (
        Msg::Hello {
            profile_digest: d1,
            criu_version: v1,
            criu_version_number: n1,
            ..
        },
        Msg::Hello {
            profile_digest: d2,
            criu_version: v2,
            criu_version_number: n2,
            role,
            ..
        },
    ) = (ours, theirs)
    else {
        return Err(protocol("hello", theirs));
    };
    let want_peer = we.peer();
    if *role != want_peer {
        return Err(Failure::new(
            Code::MigrateRoleMismatch,
            "hello",
            format!(
                "the other side runs as `--role {role}` too; one side must be `--role {want_peer}`"
            ),
            Exit::Usage,
        ));
    }
    let hex64 = |d: &str| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit());
    if !hex64(d2) {
        return Err(Failure::new(
            Code::MigrateProtocol,
            "hello",
            "the other side sent a profile digest that is not a sha256".to_string(),
            Exit::CriuFailed,
        ));
    }
    if d1 != d2 {
        return Err(Failure::new(
            Code::MigrateProfileMismatch,
            "hello",
            format!(
                "the two sides run different profiles (sha256 {} here, {} there)",
                d1.chars().take(12).collect::<String>(),
                d2.chars().take(12).collect::<String>()
            ),
            Exit::Usage,
        )
        .hint("run both halves with the same profile file (same content after `extends` and defaults)"));
    }
    let ((src_v, src_n), (dst_v, dst_n)) = match we {
        Role::Source => ((v1, n1), (v2, n2)),
        Role::Destination => ((v2, n2), (v1, n1)),
    };
    if dst_n < src_n {
        return Err(Failure::new(
            Code::MigrateCriuVersion,
            "hello",
            format!("the destination's CRIU {dst_v} is older than the source's CRIU {src_v}: it may not read the images"),
            Exit::NotReady,
        )
        .key("criu.min_version")
        .hint("install the same or a newer CRIU on the destination"));
    }
    Ok(())
}

pub(crate) fn protocol(waiting_for: &str, got: &Msg) -> Failure {
    Failure::new(
        Code::MigrateProtocol,
        waiting_for,
        format!(
            "expected `{waiting_for}` on the control connection, got `{}`",
            got.name()
        ),
        Exit::CriuFailed,
    )
    .hint("run the same ckptctl version with the same profile on both hosts; the other side's output says what it did")
}

/// A receive failure as a step failure.
pub(crate) fn conn_failure(step: &str, e: ConnError, exit: Exit, tree_note: &str) -> Failure {
    if let ConnError::Tls(t) = &e {
        return tls_failure(step, t, tree_note);
    }
    let code = match e {
        ConnError::Timeout(..) => Code::MigrateTimeout,
        ConnError::Interrupted => Code::ApplyInterrupted,
        _ => Code::MigrateConnection,
    };
    let mut f = Failure::new(code, step, format!("{e}{tree_note}"), exit);
    if matches!(e, ConnError::Timeout(..)) {
        f = f.key("migration.step_timeout").hint(
            "check the other side's output; raise `migration.step_timeout` if it was only slow",
        );
    }
    f
}

/// The peer stopped with `error`.
pub(crate) fn peer_error(step: &str, message: &str, exit: Exit, tree_note: &str) -> Failure {
    // The peer failed: whatever it says, this side never exits 0 or 1.
    let exit = match exit {
        Exit::Usage | Exit::NotReady => exit,
        _ => Exit::CriuFailed,
    };
    Failure::new(
        Code::MigratePeerFailed,
        step,
        format!("the other side stopped: {message}{tree_note}"),
        exit,
    )
    .hint("fix what the other host's diagnostic names (its own output has the key and the CRIU log), then start both roles again")
}

pub(crate) fn tell_peer(conn: &mut Option<Conn>, f: &Failure) {
    if let Some(c) = conn.as_mut() {
        let _ = c.send(&Msg::Error {
            message: f.message.clone(),
            exit: f.exit,
        });
        c.shutdown();
    }
}

/// A TLS handshake or record failure on the control connection.
pub(crate) fn tls_failure(step: &str, e: &rustls::Error, tree_note: &str) -> Failure {
    let (key, exit, text) = tls::explain(e);
    Failure::new(
        Code::MigrateTls,
        step,
        format!("control connection: {text}{tree_note}"),
        exit,
    )
    .key(key)
    .hint("both hosts' certificates must chain to `page_server.tls.ca_cert`, and the destination's must name `migration.destination` unless `no_cn_verify = true`")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hello whose digest is the sha256-shaped repetition of `digest`.
    fn h(digest: &str, n: u32, role: Role) -> Msg {
        Msg::Hello {
            profile_digest: digest.repeat(64 / digest.len().max(1)),
            criu_version: format!("{n}"),
            criu_version_number: n,
            role,
            ckptctl: "0".into(),
            cpuinfo: None,
        }
    }

    #[test]
    fn hello_checks() {
        assert!(
            check_hello(
                &h("a", 40101, Role::Source),
                &h("a", 40101, Role::Destination),
                Role::Source
            )
            .is_ok()
        );
        assert!(
            check_hello(
                &h("a", 40100, Role::Source),
                &h("a", 40200, Role::Destination),
                Role::Source
            )
            .is_ok()
        );
        let f = check_hello(
            &h("a", 40101, Role::Source),
            &h("b", 40101, Role::Destination),
            Role::Source,
        )
        .unwrap_err();
        assert_eq!(
            (f.code, f.exit),
            (Code::MigrateProfileMismatch, Exit::Usage)
        );
        let f = check_hello(
            &h("a", 40101, Role::Destination),
            &h("a", 40200, Role::Source),
            Role::Destination,
        )
        .unwrap_err();
        assert_eq!((f.code, f.exit), (Code::MigrateCriuVersion, Exit::NotReady));
        let f = check_hello(
            &h("a", 40101, Role::Source),
            &h("a", 40101, Role::Source),
            Role::Source,
        )
        .unwrap_err();
        assert_eq!(f.code, Code::MigrateRoleMismatch);
        // A digest that is not a sha256 (here with multi-byte characters)
        // is refused, never sliced.
        let bad = Msg::Hello {
            profile_digest: "a€€€€€€€€€€€€€€€€€€€€€€€".into(),
            criu_version: "4.1.1".into(),
            criu_version_number: 40101,
            role: Role::Destination,
            ckptctl: "0".into(),
            cpuinfo: None,
        };
        let f = check_hello(&h("a", 40101, Role::Source), &bad, Role::Source).unwrap_err();
        assert_eq!(f.code, Code::MigrateProtocol);
    }
}
