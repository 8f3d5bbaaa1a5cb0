//! Real certificates for the TLS tests, made with rcgen in the test: a CA per test, server
//! certificates for `localhost` and `127.0.0.1`, client certificates, written as PEM files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority whose files live in `dir`.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_file: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, issuer.pem()).expect("write the CA");
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer,
            ca_file,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, stem: &str) -> CertFiles {
        self.issue(stem, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self, stem: &str) -> CertFiles {
        self.issue(stem, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, stem: &str, usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{stem} ({})", self.name));
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&files.cert, certificate.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }

    /// Client TLS settings that trust this CA only.
    pub fn trusting(&self) -> ClientTlsConfig {
        let pem = std::fs::read(&self.ca_file).expect("read the CA");
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
    }
}

/// Client TLS settings that also present `client` (mutual TLS).
pub fn with_identity(tls: ClientTlsConfig, client: &CertFiles) -> ClientTlsConfig {
    let cert = std::fs::read(&client.cert).expect("read the client certificate");
    let key = std::fs::read(&client.key).expect("read the client key");
    tls.identity(Identity::from_pem(cert, key))
}

/// `https://addr` with `tls`.
pub fn tls_endpoint(addr: SocketAddr, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS settings")
}
