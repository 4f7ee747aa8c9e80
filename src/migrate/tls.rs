//! TLS for the migration control connection, from the profile's
//! `page_server.tls` files (the ones CRIU's page server and dump use).
//!
//! Mutual TLS: the destination presents `cert`/`key` and requires a client
//! certificate chained to `ca_cert` (and not revoked by `ca_crl`); the
//! source presents its `cert`/`key` and checks the destination's
//! certificate against `ca_cert` and the name in `migration.destination`
//! (an IP address SAN or a DNS name), or the chain only with
//! `no_cn_verify = true`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::failure::Exit;

/// The TLS files of `page_server.tls`, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ca_cert`: the CA both sides' certificates chain to.
    pub ca_cert: PathBuf,
    /// `ca_crl`: revoked certificates (optional).
    pub ca_crl: Option<PathBuf>,
    /// `cert`: this host's certificate (chain), PEM.
    pub cert: PathBuf,
    /// `key`: its private key, PEM.
    pub key: PathBuf,
    /// `no_cn_verify`: the source checks the chain, not the name.
    pub no_cn_verify: bool,
}

/// A TLS set-up problem, at one `page_server.tls` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfigError {
    /// The profile key (`page_server.tls.cert`, ...).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn cfg_err(key: &'static str, message: String) -> TlsConfigError {
    TlsConfigError { key, message }
}

/// A problem with the file at `key`: "`key`: PATH what".
fn file_err(key: &'static str, path: &Path, what: impl std::fmt::Display) -> TlsConfigError {
    cfg_err(key, format!("`{key}`: {} {what}", path.display()))
}

/// A PEM file: a regular file of at most 1 MiB (a FIFO or a device named
/// here must not hang or stream into ckptctl).
fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    use crate::profile::load::{Limited, read_limited};
    read_limited(path, 1 << 20).map_err(|e| {
        let why = match e {
            Limited::Io(e) => e.to_string(),
            Limited::Directory => "it is a directory".into(),
            Limited::NotRegular(what) => format!("it is {what}, not a regular file"),
            Limited::TooLarge => "it is larger than 1 MiB".into(),
        };
        cfg_err(
            key,
            format!("`{key}`: cannot read {}: {why}", path.display()),
        )
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The loaded files, ready to make either side's configuration.
#[derive(Debug)]
pub struct TlsMaterial {
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    no_cn_verify: bool,
}

impl TlsMaterial {
    /// Read and parse every file; each problem names its key.
    pub fn load(f: &TlsFiles) -> Result<TlsMaterial, TlsConfigError> {
        const CA: &str = "page_server.tls.ca_cert";
        const CRL: &str = "page_server.tls.ca_crl";
        const CERT: &str = "page_server.tls.cert";
        const KEY: &str = "page_server.tls.key";
        let ca = read(CA, &f.ca_cert)?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            let c = c.map_err(|e| file_err(CA, &f.ca_cert, format!("is not PEM: {e}")))?;
            roots.add(c).map_err(|e| {
                file_err(
                    CA,
                    &f.ca_cert,
                    format!("holds a certificate that cannot be a trust anchor: {e}"),
                )
            })?;
        }
        if roots.is_empty() {
            return Err(file_err(CA, &f.ca_cert, "holds no PEM certificate"));
        }
        let mut crls = Vec::new();
        if let Some(p) = &f.ca_crl {
            let text = read(CRL, p)?;
            for c in CertificateRevocationListDer::pem_slice_iter(&text) {
                crls.push(c.map_err(|e| file_err(CRL, p, format!("is not PEM: {e}")))?);
            }
            if crls.is_empty() {
                return Err(file_err(CRL, p, "holds no PEM CRL"));
            }
        }
        let text = read(CERT, &f.cert)?;
        let chain = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(CERT, &f.cert, format!("is not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(file_err(CERT, &f.cert, "holds no PEM certificate"));
        }
        let text = read(KEY, &f.key)?;
        let key = PrivateKeyDer::from_pem_slice(&text)
            .map_err(|e| file_err(KEY, &f.key, format!("holds no PEM private key: {e}")))?;
        let m = TlsMaterial {
            roots: Arc::new(roots),
            crls,
            chain,
            key,
            no_cn_verify: f.no_cn_verify,
        };
        // Both configurations check the key against the certificate and
        // the CA and CRL files as a verifier reads them.
        m.server()?;
        Ok(m)
    }

    /// Whether this host's certificate is valid for `name` (an IP address
    /// SAN or a DNS name).
    pub fn names(&self, name: &ServerName<'_>) -> bool {
        self.chain.first().is_some_and(|c| {
            rustls::server::ParsedCertificate::try_from(c)
                .is_ok_and(|p| rustls::client::verify_server_name(&p, name).is_ok())
        })
    }

    /// The destination's configuration: its certificate, client
    /// certificates required and verified against `ca_cert` / `ca_crl`.
    pub fn server(&self) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .with_crls(self.crls.clone())
            .build()
            .map_err(|e| {
                cfg_err(
                    if self.crls.is_empty() {
                        "page_server.tls.ca_cert"
                    } else {
                        "page_server.tls.ca_crl"
                    },
                    format!("cannot verify client certificates with these files: {e}"),
                )
            })?;
        let mut cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("page_server.tls", format!("TLS set-up: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| {
                cfg_err(
                    "page_server.tls.key",
                    format!("`page_server.tls.key` does not fit `page_server.tls.cert`: {e}"),
                )
            })?;
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    /// The source's configuration: its certificate, the destination's
    /// verified against `ca_cert` / `ca_crl` (and its name unless
    /// `no_cn_verify`).
    pub fn client(&self) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let webpki = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .with_crls(self.crls.clone())
            .build()
            .map_err(|e| {
                cfg_err(
                    "page_server.tls.ca_cert",
                    format!("cannot verify server certificates with these files: {e}"),
                )
            })?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.no_cn_verify {
            Arc::new(ChainOnly(webpki))
        } else {
            webpki
        };
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| cfg_err("page_server.tls", format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| {
                cfg_err(
                    "page_server.tls.key",
                    format!("`page_server.tls.key` does not fit `page_server.tls.cert`: {e}"),
                )
            })?;
        Ok(Arc::new(cfg))
    }
}

/// The name the source expects in the destination's certificate: the host
/// of `migration.destination` (brackets of an IPv6 literal removed).
pub fn server_name(destination: &str) -> Result<ServerName<'static>, TlsConfigError> {
    let bare = destination.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|e| {
        cfg_err(
            "migration.destination",
            format!("`migration.destination` `{bare}` is not a TLS server name: {e}"),
        )
    })
}

/// Verifies the chain (CA, validity, CRL, signatures) like
/// [`WebPkiServerVerifier`] but accepts a certificate for any name
/// (`no_cn_verify = true`). The name is checked last there, after the
/// chain, so only that one error is dropped.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a handshake or record error means for the user: the profile key to
/// look at, the exit code, and a sentence.
pub fn explain(e: &rustls::Error) -> (&'static str, Exit, String) {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (
                    "page_server.tls.cert",
                    Exit::Usage,
                    format!(
                        "the destination's certificate does not name `migration.destination` ({e}); give it that IP address or DNS name as subject alternative name, or set `page_server.tls.no_cn_verify = true`"
                    ),
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => (
                "page_server.tls.cert",
                Exit::NotReady,
                format!(
                    "the other side's certificate is outside its validity period ({e}); renew it, or check both clocks"
                ),
            ),
            CertificateError::Revoked => (
                "page_server.tls.ca_crl",
                Exit::Usage,
                format!(
                    "the other side's certificate is revoked by `page_server.tls.ca_crl` ({e})"
                ),
            ),
            _ => (
                "page_server.tls.ca_cert",
                Exit::Usage,
                format!(
                    "the other side's certificate does not verify against `page_server.tls.ca_cert` ({e})"
                ),
            ),
        },
        E::NoCertificatesPresented => (
            "page_server.tls.cert",
            Exit::Usage,
            "the other side presented no certificate".to_string(),
        ),
        E::AlertReceived(a) => {
            let ours = matches!(
                a,
                AlertDescription::BadCertificate
                    | AlertDescription::UnsupportedCertificate
                    | AlertDescription::CertificateRevoked
                    | AlertDescription::CertificateExpired
                    | AlertDescription::CertificateUnknown
                    | AlertDescription::CertificateRequired
                    | AlertDescription::UnknownCA
                    | AlertDescription::AccessDenied
                    // rustls' answer to a certificate whose signature does
                    // not verify (a CA of the same name, but another key).
                    | AlertDescription::DecryptError
            );
            if ours {
                (
                    "page_server.tls.cert",
                    if matches!(a, AlertDescription::CertificateExpired) {
                        Exit::NotReady
                    } else {
                        Exit::Usage
                    },
                    format!(
                        "the other side refused this host's certificate (TLS alert {a:?}); its `page_server.tls.ca_cert` must be the CA that signed this `page_server.tls.cert`"
                    ),
                )
            } else {
                (
                    "page_server.tls",
                    Exit::NotReady,
                    format!("the other side ended the TLS handshake (alert {a:?})"),
                )
            }
        }
        _ => (
            "page_server.tls",
            Exit::NotReady,
            format!("TLS failed: {e} (does the other side use TLS too?)"),
        ),
    }
}

/// Test certificates made with the `openssl` command at test time.
#[cfg(test)]
pub(crate) mod testpki {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (Debian package `openssl`)");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// A CA in `dir`: `<name>.pem`, `<name>.key`.
    pub fn ca(dir: &Path, name: &str) -> PathBuf {
        let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        dir.join(pem)
    }

    /// A leaf certificate signed by the CA `ca` (as made by [`ca`]) with
    /// subject alternative name `san` (`IP:127.0.0.1`, `DNS:x`): returns
    /// (`<name>.pem`, `<name>.key`).
    pub fn leaf(dir: &Path, ca: &str, name: &str, san: &str) -> (PathBuf, PathBuf) {
        let (pem, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"),
        )
        .unwrap();
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        (dir.join(pem), dir.join(key))
    }

    /// The files of one host.
    pub fn files(ca: &Path, leaf: &(PathBuf, PathBuf), no_cn_verify: bool) -> super::TlsFiles {
        super::TlsFiles {
            ca_cert: ca.to_path_buf(),
            ca_crl: None,
            cert: leaf.0.clone(),
            key: leaf.1.clone(),
            no_cn_verify,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_problem_names_its_key() {
        let d = tempfile::tempdir().unwrap();
        let ca = testpki::ca(d.path(), "ca");
        let s = testpki::leaf(d.path(), "ca", "s", "IP:127.0.0.1");
        let ok = testpki::files(&ca, &s, false);
        assert!(TlsMaterial::load(&ok).is_ok());
        let junk = d.path().join("junk");
        std::fs::write(&junk, "not pem").unwrap();
        let gone = d.path().join("gone");
        let cases: [(TlsFiles, &str); 5] = [
            (
                TlsFiles {
                    ca_cert: gone.clone(),
                    ..ok.clone()
                },
                "page_server.tls.ca_cert",
            ),
            (
                TlsFiles {
                    ca_cert: junk.clone(),
                    ..ok.clone()
                },
                "page_server.tls.ca_cert",
            ),
            (
                TlsFiles {
                    cert: gone.clone(),
                    ..ok.clone()
                },
                "page_server.tls.cert",
            ),
            (
                TlsFiles {
                    key: junk.clone(),
                    ..ok.clone()
                },
                "page_server.tls.key",
            ),
            (
                TlsFiles {
                    ca_crl: Some(gone.clone()),
                    ..ok.clone()
                },
                "page_server.tls.ca_crl",
            ),
        ];
        for (f, key) in cases {
            let e = TlsMaterial::load(&f).unwrap_err();
            assert_eq!(e.key, key, "{}", e.message);
        }
        // A key that is not the certificate's.
        let other = testpki::leaf(d.path(), "ca", "o", "IP:127.0.0.1");
        let e = TlsMaterial::load(&TlsFiles { key: other.1, ..ok }).unwrap_err();
        assert_eq!(e.key, "page_server.tls.key", "{}", e.message);
    }

    #[test]
    fn server_names_are_ip_literals_or_dns_names() {
        assert!(matches!(
            server_name("10.1.2.3"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("dst.example"),
            Ok(ServerName::DnsName(_))
        ));
    }
}
