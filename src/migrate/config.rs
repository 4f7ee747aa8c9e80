//! The `[migration]` settings a half needs, read and checked before
//! anything starts (TLS files, names), and what this version refuses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::bootstrap::{self};
use crate::apply::session::Session;
use crate::failure::Exit;
use crate::failure::{Code, Failure};
use crate::profile::Profile;
use crate::profile::model::ImagesMode;
use crate::render::Role;

use super::tls;

/// The `[migration]` settings apply needs.
#[derive(Debug, Clone)]
pub(crate) struct Mig {
    pub(crate) destination: String,
    pub(crate) control_port: u16,
    pub(crate) step_timeout: Duration,
    /// `page_server.tls`: the control connection is mutual TLS.
    pub(crate) tls: Option<Arc<tls::TlsMaterial>>,
}

pub(crate) fn migration(p: &Profile, role: Role) -> Result<Mig, Failure> {
    let m = p
        .migration
        .as_ref()
        .map(|m| m.value.clone())
        .ok_or_else(|| {
            Failure::new(
                Code::MigrateNoMigration,
                "prepare",
                "a migrate profile needs a `[migration]` table",
                Exit::Usage,
            )
            .key("migration")
        })?;
    let destination = m
        .destination
        .as_ref()
        .map(|d| d.value.0.clone())
        .ok_or_else(|| {
            Failure::new(
                Code::MigrateNoDestination,
                "prepare",
                "`migration.destination` is not set",
                Exit::Usage,
            )
            .key("migration.destination")
        })?;
    let control_port = m
        .control_port
        .as_ref()
        .and_then(|p| u16::try_from(p.value.0).ok())
        .ok_or_else(|| {
            Failure::new(
                Code::MigrateNoControlPort,
                "prepare",
                "`migration.control_port` is not set",
                Exit::Usage,
            )
            .key("migration.control_port")
        })?;
    let tls = match tls_files(p)? {
        Some(f) => {
            let m = tls::TlsMaterial::load(&f).map_err(tls_config_failure)?;
            // Each role builds its side's configuration; check both now,
            // and the name the source expects, before anything starts.
            m.client().map_err(tls_config_failure)?;
            let dest_name = tls::server_name(&destination).map_err(tls_config_failure)?;
            if !f.no_cn_verify {
                // CRIU checks both hosts' certificates against the page
                // server's address; the source checks the destination's
                // against `migration.destination`.
                let ps_addr = p
                    .page_server
                    .as_ref()
                    .and_then(|ps| ps.value.address.as_ref())
                    .map_or_else(|| destination.clone(), |a| a.value.0.to_string());
                let mut names = vec![(
                    ps_addr,
                    "`page_server.address` (CRIU's page server and dump check both hosts' certificates against it)",
                )];
                if role == Role::Destination {
                    names.push((destination.clone(), "`migration.destination` (the source checks the control connection against it)"));
                }
                for (host, why) in names {
                    let name = if host == destination {
                        dest_name.clone()
                    } else {
                        tls::server_name(&host).map_err(tls_config_failure)?
                    };
                    if !m.names(&name) {
                        return Err(Failure::new(
                            Code::MigrateTlsConfig,
                            "prepare",
                            format!(
                                "this host's certificate {} does not name `{host}`, the address of {why}",
                                f.cert.display()
                            ),
                            Exit::Usage,
                        )
                        .key("page_server.tls.cert")
                        .hint(format!("issue the certificate with `{host}` as subject alternative name (IP address or DNS name), or set `page_server.tls.no_cn_verify = true` to check the chain only")));
                    }
                }
            }
            Some(Arc::new(m))
        }
        None => None,
    };
    Ok(Mig {
        destination,
        control_port,
        step_timeout: Duration::from_secs(m.step_timeout().0.max(1)),
        tls,
    })
}

/// `page_server.tls` as absolute paths (CRIU changes its directory, and
/// the control connection reads the same files). The control connection
/// verifies both sides, so `ca_cert`, `cert` and `key` are required.
pub(crate) fn tls_files(p: &Profile) -> Result<Option<tls::TlsFiles>, Failure> {
    let Some(t) = p.page_server.as_ref().and_then(|ps| ps.value.tls.as_ref()) else {
        return Ok(None);
    };
    let t = &t.value;
    let need = |v: &Option<crate::profile::value::Spanned<crate::profile::value::PathValue>>,
                key: &'static str|
     -> Result<PathBuf, Failure> {
        let v = v.as_ref().ok_or_else(|| {
            Failure::new(
                Code::MigrateTlsConfig,
                "prepare",
                format!("`{key}` is not set: the migration control connection is mutual TLS and needs `ca_cert`, `cert` and `key`"),
                Exit::Usage,
            )
            .key(key.rsplit_once('.').map_or(key, |(table, _)| table))
            .hint("set `ca_cert`, `cert` and `key` in `[page_server.tls]`: the CA both hosts' certificates chain to, and this host's certificate and key")
        })?;
        Ok(absolute(&v.value.resolved))
    };
    Ok(Some(tls::TlsFiles {
        ca_cert: need(&t.ca_cert, "page_server.tls.ca_cert")?,
        ca_crl: t.ca_crl.as_ref().map(|c| absolute(&c.value.resolved)),
        cert: need(&t.cert, "page_server.tls.cert")?,
        key: need(&t.key, "page_server.tls.key")?,
        no_cn_verify: t.no_cn_verify(),
    }))
}

/// A path made absolute against the current directory.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub(crate) fn tls_config_failure(e: tls::TlsConfigError) -> Failure {
    Failure::new(Code::MigrateTlsConfig, "prepare", e.message, Exit::Usage)
        .key(e.key)
        .hint("fix the file or the path in `[page_server.tls]`; both hosts need their own readable PEM files")
}

/// Refuse what this version cannot run, before anything starts. Both roles
/// run the same checks on the same profile, so both stop the same way.
pub(crate) fn refuse_unsupported(run: &mut Session<'_>) -> Result<(), Failure> {
    let p = run.profile();
    if let Some(l) = p.lazy_pages.as_ref().filter(|l| l.value.enabled()) {
        bootstrap::feature_gate(run, bootstrap::Feature::LazyPages)?;
        // Without `address`, the destination restores lazily from its own
        // images (post-copy from the destination's disk). With it, the
        // source's CRIU serves the pages from the tree's memory: probe
        // what that needs here (both roles, so both stop the same way).
        if l.value.address.is_some() {
            let probe = crate::criu::probe::lazy_page_server();
            if !probe.supported {
                return Err(Failure::new(
                    Code::MigrateLazyUnsupported,
                    "prepare",
                    format!(
                        "post-copy migration from the source's memory (remote lazy pages) cannot run here: {}",
                        probe.message
                    ),
                    Exit::NotReady,
                )
                .key("lazy_pages.address")
                .hint("run both roles where the source's lazy page server can work (CAP_SYS_RESOURCE, or `sysctl fs.pipe-max-size=4194304`); or remove `lazy_pages.address` to restore lazily from the destination's own images, or `[lazy_pages]` to migrate stop-and-copy"));
            }
        }
    }
    if p.checkpoint().pre_dump.is_some() {
        // Exit 4 naming `checkpoint.pre_dump` when soft-dirty tracking is
        // off (both roles probe, so both stop the same way).
        bootstrap::feature_gate(run, bootstrap::Feature::DirtyTracking)?;
    }
    // A container sends its pages too (crate::migrate::container).
    if sends_images(p) && p.page_server.is_none() && !crate::runtime::args::is_container(p) {
        return Err(Failure::new(
            Code::MigrateSendNeedsPageServer,
            "prepare",
            "`migration.images = \"send\"` needs `[page_server]`: the pages go to the destination's page server, only the other images travel over the control connection",
            Exit::Usage,
        )
        .key("migration.images")
        .hint("add a `[page_server]` table (its address is the destination's), or use `images = \"shared\"` with an `images.dir` both hosts see"));
    }
    Ok(())
}

/// `[lazy_pages]` without `address`: the destination restores lazily from
/// its own images.
pub(crate) fn lazy_local(p: &Profile) -> bool {
    p.lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled() && l.value.address.is_none())
}

/// `migration.images = "send"`.
pub(crate) fn sends_images(p: &Profile) -> bool {
    p.migration
        .as_ref()
        .is_some_and(|m| m.value.images() == ImagesMode::Send)
}
