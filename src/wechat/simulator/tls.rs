//! The simulator's TLS, as WeChat's `/secapi/` front end has it: its own CA, a server
//! certificate for `127.0.0.1`/`localhost`, and a merchant API certificate (CN = the mch_id)
//! for minipay to present. The listener asks every client for a certificate, refuses one its
//! CA did not issue during the handshake, and lets a client without one through so that the
//! refund endpoint can answer it as WeChat does ("400 No required SSL certificate was sent").

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Whether the TLS client presented a certificate (the CA checked it in the handshake). Absent
/// on requests that came over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub bool);

/// The simulator's CA and certificates, made fresh for each simulator.
pub struct SimTls {
    pems: TlsPems,
    server: Arc<rustls::ServerConfig>,
}

/// What `GET /sim/tls` shows: the PEMs tests and simulator mode need to talk to the TLS
/// listener (trust `ca_pem`; present `client_cert_pem` + `client_key_pem`).
#[derive(Clone, Serialize, Deserialize)]
pub struct TlsPems {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl std::fmt::Debug for TlsPems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPems")
            .field("ca_pem", &self.ca_pem)
            .field("client_cert_pem", &self.client_cert_pem)
            .field("client_key_pem", &"***")
            .finish()
    }
}

fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok(params)
}

/// A leaf certificate signed by `issuer`, with its key.
fn leaf(
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert, key))
}

impl SimTls {
    /// A new CA with a server certificate for loopback and a client certificate naming
    /// `mch_id`.
    pub fn generate(mch_id: &str) -> Result<SimTls, String> {
        Self::build(mch_id).map_err(|e| e.to_string())
    }

    fn build(mch_id: &str) -> Result<SimTls, Box<dyn std::error::Error>> {
        let ca_key = KeyPair::generate()?;
        let params = ca_params("minipay simulator CA")?;
        let ca_cert = params.self_signed(&ca_key)?;
        let issuer = Issuer::new(params, ca_key);
        let loopback = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (server_cert, server_key) = leaf(
            loopback,
            "api.mch.weixin.qq.com simulator",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let (client_cert, client_key) = leaf(
            Vec::new(),
            mch_id,
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;

        let provider = Arc::new(default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let server_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.der().clone()], server_key)?;
        Ok(SimTls {
            pems: TlsPems {
                ca_pem: ca_cert.pem(),
                client_cert_pem: client_cert.pem(),
                client_key_pem: client_key.serialize_pem(),
            },
            server: Arc::new(server),
        })
    }

    /// The CA, client certificate and key as PEM.
    pub fn pems(&self) -> &TlsPems {
        &self.pems
    }

    /// The CA certificate, to trust it (e.g. in [`crate::wechat::v2::tls::client_config`]).
    pub fn ca_certificates(&self) -> Vec<CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(self.pems.ca_pem.as_bytes())
            .filter_map(Result::ok)
            .collect()
    }
}

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` with `tls`'s certificates until the task running
/// this is dropped. Each request carries a [`ClientCert`] extension.
pub async fn serve_tls(listener: TcpListener, tls: &SimTls, router: Router) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls.server.clone());
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like pass; keep serving, as axum::serve does.
                tracing::warn!(error = %e, "simulator TLS listener could not accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "simulator TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let presented = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|certs| !certs.is_empty());
            let service = TowerToHyperService::new(router.layer(Extension(ClientCert(presented))));
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "simulator TLS connection ended");
            }
        });
    }
}
