//! The test federation's certificate authority (rcgen): every server gets its own certificate
//! for `localhost` and `127.0.0.1`, signed by a CA that every server trusts through its
//! configuration (Palabre's `federation.extra_ca_file`, Synapse's `federation_custom_ca_list`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate as a PEM file.
    pub pem_file: PathBuf,
}

/// A server's certificate and private key, as PEM files.
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Ca {
    /// A new CA; its certificate is written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Palabre federation tests CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem_file = dir.join("ca.pem");
        std::fs::write(&pem_file, cert.pem()).expect("write ca.pem");
        Ca {
            cert,
            key,
            pem_file,
        }
    }

    /// A certificate for `localhost` and 127.0.0.1 signed by this CA, written into `dir`.
    pub fn issue(&self, dir: &Path) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        // No basicConstraints extension: rcgen encodes an explicit `cA FALSE`, a DER default
        // that Python's cryptography (Synapse) refuses to parse.
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write tls.crt");
        std::fs::write(&key_file, key.serialize_pem()).expect("write tls.key");
        ServerCert {
            cert_file,
            key_file,
        }
    }

    /// An HTTP client that trusts this CA only (for the harness's own requests to the
    /// servers' federation listeners).
    pub fn https_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.cert.pem().as_bytes()).expect("CA for reqwest"),
            )
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("https client")
    }
}
