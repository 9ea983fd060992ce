//! TLS for Broker peerings, as Broker sets it up: anonymous ECDH by default
//! (no certificates: `AECDH-AES256-SHA` at security level 0 on P-384,
//! TLS 1.2, encrypted but not authenticated), or certificates with peer
//! verification. The accepting side is the TLS server.

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode, SslVersion};

use crate::config::{Config, TlsMode};

/// Broker's cipher list without certificates.
pub const ANONYMOUS_CIPHERS: &str = "AECDH-AES256-SHA@SECLEVEL=0";
/// Broker's cipher list with certificates.
pub const CERTIFICATE_CIPHERS: &str = "HIGH:!aNULL:!MD5";

/// The acceptor for the configured mode; `None` without TLS.
pub fn acceptor(cfg: &Config) -> Result<Option<SslAcceptor>, String> {
    let err = |what: &str, e: openssl::error::ErrorStack| format!("TLS setup ({what}): {e}");
    let mut b = match cfg.tls {
        TlsMode::None => return Ok(None),
        TlsMode::Anonymous | TlsMode::Certificates => {
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| err("context", e))?
        }
    };
    b.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| err("minimum version", e))?;
    match cfg.tls {
        TlsMode::Anonymous => {
            // Anonymous suites exist up to TLS 1.2 only.
            b.set_max_proto_version(Some(SslVersion::TLS1_2)).map_err(|e| err("maximum version", e))?;
            b.set_cipher_list(ANONYMOUS_CIPHERS).map_err(|e| err("cipher list", e))?;
            b.set_groups_list("P-384").map_err(|e| err("groups", e))?;
            b.set_verify(SslVerifyMode::NONE);
        }
        TlsMode::Certificates => {
            let path = |p: &Option<std::path::PathBuf>| p.clone().expect("checked by Config::validate");
            b.set_cipher_list(CERTIFICATE_CIPHERS).map_err(|e| err("cipher list", e))?;
            b.set_ca_file(path(&cfg.ssl_cafile)).map_err(|e| err("ssl_cafile", e))?;
            b.set_certificate_chain_file(path(&cfg.ssl_certificate)).map_err(|e| err("ssl_certificate", e))?;
            b.set_private_key_file(path(&cfg.ssl_keyfile), SslFiletype::PEM).map_err(|e| err("ssl_keyfile", e))?;
            b.check_private_key().map_err(|e| err("ssl_keyfile does not match ssl_certificate", e))?;
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        TlsMode::None => {}
    }
    Ok(Some(b.build()))
}
