//! One generated local CA that signs every HTTPS stand-in (vault, gate, Azurite).

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};

/// The CA and a server certificate for 127.0.0.1, localhost and `*.vault.azure.net`.
pub struct LocalTls {
    pub ca_pem: String,
    pub server_cert_pem: String,
    server_cert_der: CertificateDer<'static>,
    pub server_key_pem: String,
    server_key_der: Vec<u8>,
}

/// Where the PEM files were written.
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl LocalTls {
    pub fn generate() -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "devstack local CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "*.vault.azure.net".to_string(),
        ])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        Ok(Self {
            ca_pem: ca.pem(),
            server_cert_pem: cert.pem(),
            server_cert_der: cert.der().clone(),
            server_key_pem: key.serialize_pem(),
            server_key_der: key.serialize_der(),
        })
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<TlsFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = TlsFiles {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        std::fs::write(&files.ca_cert, &self.ca_pem)?;
        std::fs::write(&files.server_cert, &self.server_cert_pem)?;
        std::fs::write(&files.server_key, &self.server_key_pem)?;
        Ok(files)
    }

    /// A rustls server configuration for actix-web.
    pub fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        install_crypto_provider();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        Ok(rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert_der.clone()], key)?)
    }

    /// A client that trusts only this CA.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        install_crypto_provider();
        Ok(reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(
                self.ca_pem.as_bytes(),
            )?)
            .no_gzip()
            .no_deflate()
            .build()?)
    }
}

pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
