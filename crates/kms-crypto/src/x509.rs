//! X.509 for HSM clusters: the cluster's certificate signing request, and the check that a
//! signed cluster certificate chains to the owner's trust anchor (InitializeCluster).

use rcgen::PublicKeyData as _;
use x509_parser::pem::Pem;
use x509_parser::prelude::X509Certificate;

use crate::CryptoError;

/// A new ECDSA P-256 key and a CSR for it with subject CN=`common_name`:
/// (PKCS#8 DER, CSR PEM, SubjectPublicKeyInfo DER).
pub fn cluster_csr(
    common_name: &str,
) -> Result<(crate::SecretBytes, String, Vec<u8>), CryptoError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|_| CryptoError::Primitive)?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|_| CryptoError::Primitive)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params
        .serialize_request(&key)
        .map_err(|_| CryptoError::Primitive)?;
    let pem = csr.pem().map_err(|_| CryptoError::Primitive)?;
    Ok((
        zeroize::Zeroizing::new(key.serialize_der()),
        pem,
        key.subject_public_key_info(),
    ))
}

/// Why a signed cluster certificate is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    /// Not PEM, or not an X.509 certificate.
    #[error("{0} is not a PEM X.509 certificate")]
    Unparseable(&'static str),
    /// The certificate does not certify the key of the cluster's CSR.
    #[error("the signed certificate is not for the cluster's CSR key")]
    WrongKey,
    /// No path from the certificate to a self-signed certificate in the trust anchor bundle.
    #[error("the signed certificate does not chain to the trust anchor")]
    NotChained,
    /// Outside its validity period.
    #[error("{0} is expired or not yet valid")]
    NotValidNow(&'static str),
}

fn parse_all(pem_text: &str) -> Vec<Pem> {
    Pem::iter_from_buffer(pem_text.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// Checks that `signed_pem` certifies `csr_spki` and chains, through the certificates of
/// `trust_anchor_pem` (the anchor, optionally preceded by intermediates), to a self-signed
/// certificate in that bundle.
pub fn verify_cluster_certificate(
    signed_pem: &str,
    trust_anchor_pem: &str,
    csr_spki: &[u8],
) -> Result<(), CertificateError> {
    let signed_pems = parse_all(signed_pem);
    let signed = signed_pems
        .first()
        .and_then(|p| p.parse_x509().ok())
        .ok_or(CertificateError::Unparseable("SignedCert"))?;
    let bundle_pems = parse_all(trust_anchor_pem);
    let bundle: Vec<X509Certificate<'_>> = bundle_pems
        .iter()
        .filter_map(|p| p.parse_x509().ok())
        .collect();
    if bundle.is_empty() || bundle.len() != bundle_pems.len() {
        return Err(CertificateError::Unparseable("TrustAnchor"));
    }
    if signed.public_key().raw != csr_spki {
        return Err(CertificateError::WrongKey);
    }
    if !signed.validity().is_valid() {
        return Err(CertificateError::NotValidNow("SignedCert"));
    }
    let mut current = signed;
    for _ in 0..=bundle.len() {
        let issuer = bundle
            .iter()
            .find(|c| current.verify_signature(Some(c.public_key())).is_ok());
        let Some(issuer) = issuer else {
            return Err(CertificateError::NotChained);
        };
        if !issuer.validity().is_valid() {
            return Err(CertificateError::NotValidNow("TrustAnchor"));
        }
        if issuer.verify_signature(None).is_ok() {
            return Ok(());
        }
        current = issuer.clone();
    }
    Err(CertificateError::NotChained)
}

/// The first certificate of a PEM bundle, normalised (for comparing trust anchors).
pub fn first_certificate_der(pem_text: &str) -> Option<Vec<u8>> {
    parse_all(pem_text).first().map(|p| p.contents.clone())
}

/// The DER of the one X.509 certificate `pem_text` holds, or `None` when it holds none, more
/// than one PEM block, or something that is not a certificate. (A CloudHSM trust anchor,
/// `customerCA.crt`, is exactly one certificate.)
pub fn single_certificate_der(pem_text: &str) -> Option<Vec<u8>> {
    let all: Vec<Pem> = Pem::iter_from_buffer(pem_text.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    match all.as_slice() {
        [one] if one.label == "CERTIFICATE" && one.parse_x509().is_ok() => {
            Some(one.contents.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> (rcgen::Certificate, rcgen::CertificateParams, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap(), p, key)
    }

    fn sign_csr(
        csr_pem: &str,
        params: &rcgen::CertificateParams,
        ca_key: &rcgen::KeyPair,
    ) -> String {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        let issuer = rcgen::Issuer::from_params(params, ca_key);
        csr.signed_by(&issuer).unwrap().pem()
    }

    #[test]
    fn signed_csr_chains_to_its_anchor_only() {
        let (_, csr, spki) = cluster_csr("cluster-abc").unwrap();
        let (ca_cert, ca_params, ca_key) = ca("owner CA");
        let signed = sign_csr(&csr, &ca_params, &ca_key);
        verify_cluster_certificate(&signed, &ca_cert.pem(), &spki).unwrap();

        let (other, _, _) = ca("someone else");
        assert_eq!(
            verify_cluster_certificate(&signed, &other.pem(), &spki),
            Err(CertificateError::NotChained)
        );
        let (_, _, other_spki) = cluster_csr("cluster-def").unwrap();
        assert_eq!(
            verify_cluster_certificate(&signed, &ca_cert.pem(), &other_spki),
            Err(CertificateError::WrongKey)
        );
        assert_eq!(
            verify_cluster_certificate("junk", &ca_cert.pem(), &spki),
            Err(CertificateError::Unparseable("SignedCert"))
        );
        assert_eq!(
            first_certificate_der(&ca_cert.pem()).unwrap(),
            ca_cert.der().to_vec()
        );
    }

    #[test]
    fn a_trust_anchor_is_exactly_one_certificate() {
        let (ca_cert, _, _) = ca("owner CA");
        let (other, _, _) = ca("appended");
        assert_eq!(
            single_certificate_der(&ca_cert.pem()).unwrap(),
            ca_cert.der().to_vec()
        );
        let two = format!("{}{}", ca_cert.pem(), other.pem());
        assert_eq!(first_certificate_der(&two).unwrap(), ca_cert.der().to_vec());
        assert_eq!(single_certificate_der(&two), None);
        assert_eq!(single_certificate_der(""), None);
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(single_certificate_der(key), None);
    }
}
