//! The control connection's opening: hello, version and digest checks,
//! and its failures (protocol, connection, TLS, the peer's `error`).

use crate::criu::CriuVersion;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;
use crate::render::Role;

use super::proto::{Conn, ConnError, Msg, PROTOCOL};
use super::tls;

/// Keys whose text says nothing to CRIU: left out of the digest, so two
/// sides that differ only in a description still migrate.
pub const FREE_TEXT_KEYS: &[&str] = &["description"];

/// sha256 of the resolved profile (after `extends` and defaults), free text
/// ([`FREE_TEXT_KEYS`]) left out.
pub fn profile_digest(p: &Profile) -> String {
    let mut v = crate::profile::section::section_json(p);
    if let Some(o) = v.as_object_mut() {
        for k in FREE_TEXT_KEYS {
            o.remove(*k);
        }
    }
    crate::digest::sha256_hex(serde_json::to_string(&v).unwrap_or_default().as_bytes())
}

/// A short sha256 of each resolved key's value, free text left out.
pub fn key_digests(p: &Profile) -> std::collections::BTreeMap<String, String> {
    p.resolved()
        .into_iter()
        .filter(|r| !FREE_TEXT_KEYS.contains(&r.key.as_str()))
        .map(|r| {
            let d = crate::digest::sha256_hex(r.value.to_string().as_bytes());
            (r.key, d.chars().take(16).collect())
        })
        .collect()
}

/// The keys whose values differ between two sides (or are on one only).
fn differing_keys(
    a: &std::collections::BTreeMap<String, String>,
    b: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(b.keys().filter(|k| !a.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

pub(crate) fn hello(p: &Profile, v: &CriuVersion, role: Role) -> Msg {
    Msg::Hello {
        protocol: crate::apply::fault::hello_protocol(PROTOCOL),
        profile_digest: profile_digest(p),
        criu_version: v.to_string(),
        criu_version_number: v.number(),
        role,
        ckptctl: env!("CARGO_PKG_VERSION").to_string(),
        cpuinfo: None,
        key_digests: key_digests(p),
    }
}

/// Compare the peer's hello with ours: (source's, destination's).
pub(crate) fn check_hello(ours: &Msg, theirs: &Msg, we: Role) -> Result<(), Failure> {
    let (
        Msg::Hello {
            protocol: p1,
            profile_digest: d1,
            criu_version: v1,
            criu_version_number: n1,
            key_digests: k1,
            ckptctl: c1,
            ..
        },
        Msg::Hello {
            protocol: p2,
            profile_digest: d2,
            criu_version: v2,
            criu_version_number: n2,
            role,
            key_digests: k2,
            ckptctl: c2,
            ..
        },
    ) = (ours, theirs)
    else {
        return Err(protocol("hello", theirs));
    };
    // First: another protocol may mean anything by the other fields (a
    // digest of another profile model would read as "different profiles").
    if p1 != p2 {
        return Err(version_mismatch((c1, *p1), (c2, *p2), we));
    }
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
        let keys = differing_keys(k1, k2);
        let which = if keys.is_empty() {
            String::new()
        } else {
            let shown: Vec<String> = keys.iter().take(8).map(|k| format!("`{k}`")).collect();
            let more = keys.len().saturating_sub(8);
            format!(
                "; keys that differ: {}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        let mut f = Failure::new(
            Code::MigrateProfileMismatch,
            "hello",
            format!(
                "the two sides run different profiles (sha256 {} here, {} there){which}",
                d1.chars().take(12).collect::<String>(),
                d2.chars().take(12).collect::<String>()
            ),
            Exit::Usage,
        );
        if let [one] = keys.as_slice() {
            f = f.key(one.clone());
        }
        return Err(f);
    }
    let ((src_v, src_n), (dst_v, dst_n)) = match we {
        Role::Source => ((v1, n1), (v2, n2)),
        Role::Destination => ((v2, n2), (v1, n1)),
    };
    if dst_n < src_n {
        return Err(Failure::new(
            Code::MigrateCriuVersion,
            "hello",
            format!(
                "the destination's CRIU {dst_v} is older than the source's CRIU {src_v}: it may not read the images"
            ),
            Exit::NotReady,
        ));
    }
    Ok(())
}

/// Two ckptctl whose control protocols differ: (ours, theirs) as
/// (ckptctl version, protocol).
fn version_mismatch(ours: (&str, u32), theirs: (&str, u32), we: Role) -> Failure {
    Failure::new(
        Code::MigrateVersionMismatch,
        "hello",
        format!(
            "the {peer} runs ckptctl {} (control protocol {}), this host ckptctl {} (control protocol {}): they cannot migrate between each other; the process was not touched",
            theirs.0,
            theirs.1,
            ours.0,
            ours.1,
            peer = we.peer(),
        ),
        Exit::NotReady,
    )
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
    Failure::new(code, step, format!("{e}{tree_note}"), exit)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hello whose digest is the sha256-shaped repetition of `digest`.
    fn h(digest: &str, n: u32, role: Role) -> Msg {
        Msg::Hello {
            protocol: PROTOCOL,
            profile_digest: digest.repeat(64 / digest.len().max(1)),
            criu_version: format!("{n}"),
            criu_version_number: n,
            role,
            ckptctl: "0".into(),
            cpuinfo: None,
            key_digests: Default::default(),
        }
    }

    fn profile(extra: &str) -> Profile {
        let text = format!(
            "version = 1\nname = \"m\"\naction = \"migrate\"\n{extra}\n[images]\ndir = \"/var/lib/ckptctl/m\"\n[migration]\ndestination = \"10.0.0.2\"\ncontrol_port = 27001\n"
        );
        let (_, l) = crate::profile::load::load_str("m", &text, crate::source::Format::Toml);
        l.profile.expect("valid")
    }

    /// Free text is not in the digest; any other difference names its key.
    #[test]
    fn digest_leaves_out_description_and_mismatches_name_the_keys() {
        let a = profile("description = \"first\"");
        let b = profile("description = \"second\"");
        assert_eq!(profile_digest(&a), profile_digest(&b));
        let v = CriuVersion::parse_cli("Version: 4.1.1\n").expect("version");
        assert!(
            check_hello(
                &hello(&a, &v, Role::Source),
                &hello(&b, &v, Role::Destination),
                Role::Source
            )
            .is_ok()
        );
        let c = profile("[checkpoint]\ntimeout = 99");
        let f = check_hello(
            &hello(&a, &v, Role::Source),
            &hello(&c, &v, Role::Destination),
            Role::Source,
        )
        .expect_err("different profiles");
        assert!(
            f.message.contains("keys that differ: `checkpoint.timeout`"),
            "{}",
            f.message
        );
        assert_eq!(f.key.as_deref(), Some("checkpoint.timeout"));
    }

    /// Another control protocol is named as such, before the digests
    /// (which may differ too) are compared; a hello without the field is
    /// protocol 1.
    #[test]
    fn another_protocol_is_a_version_mismatch_not_a_profile_mismatch() {
        let mut old = h("b", 40101, Role::Destination);
        let mut v = serde_json::to_value(&old).unwrap();
        v.as_object_mut().unwrap().remove("protocol");
        old = serde_json::from_value(v).unwrap();
        if let Msg::Hello {
            protocol, ckptctl, ..
        } = &mut old
        {
            assert_eq!(*protocol, 1);
            *ckptctl = "0.0.9".into();
        }
        let f = check_hello(&h("a", 40101, Role::Source), &old, Role::Source).unwrap_err();
        assert_eq!(
            (f.code, f.exit),
            (Code::MigrateVersionMismatch, Exit::NotReady)
        );
        let want = format!(
            "the destination runs ckptctl 0.0.9 (control protocol 1), this host ckptctl 0 (control protocol {PROTOCOL})"
        );
        assert!(f.message.starts_with(&want), "{}", f.message);
        assert!(f.hint.unwrap().contains("same ckptctl version"));
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
            protocol: PROTOCOL,
            profile_digest: "a€€€€€€€€€€€€€€€€€€€€€€€".into(),
            criu_version: "4.1.1".into(),
            criu_version_number: 40101,
            role: Role::Destination,
            ckptctl: "0".into(),
            cpuinfo: None,
            key_digests: Default::default(),
        };
        let f = check_hello(&h("a", 40101, Role::Source), &bad, Role::Source).unwrap_err();
        assert_eq!(f.code, Code::MigrateProtocol);
    }
}
