//! PKCS#10 certificate signing requests: built from a Certificate's spec, and parsed back
//! (signature checked) into what signing needs.

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, SanType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use super::inspect::{SubjectAltNames, general_names, key_algorithm_of_spki};
use super::keys::KeyPair;
use super::names::validate_dns_name;
use super::{PkiError, Result, parse_one_pem};
use crate::api::certificate::CertificateSpec;
use crate::api::common::{KeyAlgorithm, X509Subject};

/// A CSR whose signature verified, reduced to what signing uses.
#[derive(Clone, Debug)]
pub struct ParsedCsr {
    /// The subject, RFC 4514 style.
    pub subject: String,
    /// The subject's common name.
    pub common_name: Option<String>,
    /// Requested subject alternative names.
    pub subject_alt_names: SubjectAltNames,
    /// The public key's algorithm and size.
    pub key_algorithm: KeyAlgorithm,
    /// The public key as a DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    pub(crate) distinguished_name: DistinguishedName,
    pub(crate) public_key: rcgen::SubjectPublicKeyInfo,
}

fn field_error(field: impl Into<String>, value: impl Into<String>, reason: &str) -> PkiError {
    PkiError::InvalidField {
        field: field.into(),
        value: value.into(),
        reason: reason.to_string(),
    }
}

/// Builds a CSR (PEM) for a Certificate's spec: common name, subject attributes, and DNS, IP,
/// URI and email subject alternative names, signed with `key`.
pub fn build_csr(spec: &CertificateSpec, key: &KeyPair) -> Result<String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(
        spec.common_name.as_deref(),
        "commonName",
        spec.subject.as_ref(),
        "subject",
    )?;
    params.subject_alt_names = subject_alt_names(spec)?;
    let csr = params
        .serialize_request(key.signing_key())
        .map_err(|e| PkiError::Signing {
            what: "CSR".to_string(),
            reason: e.to_string(),
        })?;
    csr.pem().map_err(|e| PkiError::Signing {
        what: "CSR".to_string(),
        reason: e.to_string(),
    })
}

fn subject_alt_names(spec: &CertificateSpec) -> Result<Vec<SanType>> {
    let mut sans = Vec::new();
    let ia5 = |field: String, value: &str| {
        rcgen::string::Ia5String::try_from(value)
            .map_err(|_| field_error(field, value, "must be ASCII (IA5String)"))
    };
    for (i, name) in spec.dns_names.iter().enumerate() {
        let field = format!("dnsNames[{i}]");
        validate_dns_name(name).map_err(|reason| field_error(&field, name, &reason))?;
        sans.push(SanType::DnsName(ia5(field, name)?));
    }
    for (i, ip) in spec.ip_addresses.iter().enumerate() {
        let addr: IpAddr = ip.parse().map_err(|_| {
            field_error(
                format!("ipAddresses[{i}]"),
                ip,
                "is not an IPv4 or IPv6 address",
            )
        })?;
        sans.push(SanType::IpAddress(addr));
    }
    for (i, uri) in spec.uris.iter().enumerate() {
        let field = format!("uris[{i}]");
        let scheme_ok = uri.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
        if !scheme_ok || uri.contains(char::is_whitespace) {
            return Err(field_error(field, uri, "is not an absolute URI"));
        }
        sans.push(SanType::URI(ia5(field, uri)?));
    }
    for (i, email) in spec.email_addresses.iter().enumerate() {
        let field = format!("emailAddresses[{i}]");
        let ok = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && validate_dns_name(domain).is_ok());
        if !ok || email.contains(char::is_whitespace) {
            return Err(field_error(field, email, "is not an email address"));
        }
        sans.push(SanType::Rfc822Name(ia5(field, email)?));
    }
    Ok(sans)
}

const OID_STREET: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// A subject from a common name and the other attributes, in the order Go's crypto/x509 (and
/// so cert-manager) writes them. One value per attribute type: the certificate library keeps
/// one value per type, so a second value is refused rather than silently dropped.
pub(crate) fn distinguished_name(
    common_name: Option<&str>,
    common_name_field: &str,
    rest: Option<&X509Subject>,
    prefix: &str,
) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    if let Some(rest) = rest {
        let single = |name: &str, values: &[String]| -> Result<Option<String>> {
            match values {
                [] => Ok(None),
                [one] => Ok(Some(one.clone())),
                many => Err(field_error(
                    format!("{prefix}.{name}"),
                    many.join(", "),
                    "has more than one value; one value per subject attribute is supported",
                )),
            }
        };
        if let Some(c) = single("countries", &rest.countries)? {
            let value = rcgen::string::PrintableString::try_from(c.as_str()).map_err(|_| {
                field_error(format!("{prefix}.countries[0]"), &c, "must be printable")
            })?;
            dn.push(DnType::CountryName, DnValue::PrintableString(value));
        }
        if let Some(v) = single("provinces", &rest.provinces)? {
            dn.push(DnType::StateOrProvinceName, v);
        }
        if let Some(v) = single("localities", &rest.localities)? {
            dn.push(DnType::LocalityName, v);
        }
        if let Some(v) = single("streetAddresses", &rest.street_addresses)? {
            dn.push(DnType::CustomDnType(OID_STREET.to_vec()), v);
        }
        if let Some(v) = single("postalCodes", &rest.postal_codes)? {
            dn.push(DnType::CustomDnType(OID_POSTAL_CODE.to_vec()), v);
        }
        if let Some(v) = single("organizations", &rest.organizations)? {
            dn.push(DnType::OrganizationName, v);
        }
        if let Some(v) = single("organizationalUnits", &rest.organizational_units)? {
            dn.push(DnType::OrganizationalUnitName, v);
        }
    }
    if let Some(cn) = common_name {
        if cn.is_empty() {
            return Err(field_error(common_name_field, cn, "must not be empty"));
        }
        dn.push(DnType::CommonName, cn);
    }
    if let Some(serial) = rest.and_then(|r| r.serial_number.as_deref()) {
        let value = rcgen::string::PrintableString::try_from(serial).map_err(|_| {
            field_error(
                format!("{prefix}.serialNumber"),
                serial,
                "must be a PrintableString (letters, digits, spaces and '()+,-./:=?)",
            )
        })?;
        dn.push(
            DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
            DnValue::PrintableString(value),
        );
    }
    Ok(dn)
}

/// Whether parsing a CSR checks its signature: the requester's proof that it holds the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Possession {
    /// Checked: the CSR came from outside.
    Verify,
    /// Known: these very bytes came from [`build_csr`] in this process, signed with a key it
    /// holds. A signature is a function of the bytes, so checking it again proves nothing.
    Known,
}

/// Parses a CSR (PEM), checks its signature, and extracts subject, names and public key.
/// Requested extensions other than subject alternative names are ignored: the signer, not
/// the requester, decides usages and constraints.
pub fn parse_csr(text: &str) -> Result<ParsedCsr> {
    parse_csr_with(text, Possession::Verify)
}

/// [`parse_csr`], checking the signature only if `possession` is [`Possession::Verify`].
/// Everything else (the weak-signature refusal, names, key) is checked either way.
pub fn parse_csr_with(text: &str, possession: Possession) -> Result<ParsedCsr> {
    let block = parse_one_pem(
        "CSR",
        text,
        &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"],
    )?;
    let invalid = |reason: String| PkiError::InvalidCsr { reason };
    let (rest, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| invalid(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid(format!("{} bytes after the request", rest.len())));
    }
    let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
    if WEAK_SIGNATURES.contains(&sig_oid.as_str()) {
        return Err(invalid(format!(
            "signature algorithm {sig_oid} uses SHA-1, which is not accepted"
        )));
    }
    if possession == Possession::Verify {
        csr.verify_signature()
            .map_err(|e| invalid(format!("signature does not verify ({e})")))?;
    }
    let info = &csr.certification_request_info;
    let key_algorithm =
        key_algorithm_of_spki(&info.subject_pki).map_err(|e| invalid(e.to_string()))?;
    let mut subject_alt_names = SubjectAltNames::default();
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                subject_alt_names = general_names(&san.general_names)
                    .map_err(|e| invalid(format!("subject alternative name: {e}")))?;
            }
        }
    }
    for (i, name) in subject_alt_names.dns_names.iter().enumerate() {
        validate_dns_name(name)
            .map_err(|reason| invalid(format!("DNS name [{i}] {name:?} {reason}")))?;
    }
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| invalid(format!("public key: {e}")))?;
    Ok(ParsedCsr {
        subject: info.subject.to_string(),
        common_name: info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        subject_alt_names,
        key_algorithm,
        public_key_der: info.subject_pki.raw.to_vec(),
        distinguished_name: dn_from_x509(&info.subject).map_err(invalid)?,
        public_key,
    })
}

const WEAK_SIGNATURES: [&str; 3] = [
    "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
    "1.3.14.3.2.29",        // sha1WithRSA (OIW)
    "1.2.840.10045.4.1",    // ecdsa-with-SHA1
];

/// A subject as the certificate library writes it, keeping each value's string type.
pub(crate) fn dn_from_x509(name: &X509Name<'_>) -> std::result::Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("subject: multi-valued or empty RDNs are not supported".to_string());
        };
        let oid = attr.attr_type();
        let arcs: Vec<u64> = oid
            .iter()
            .ok_or_else(|| format!("subject: attribute type {oid} is not a valid OID"))?
            .collect();
        let ty = DnType::from_oid(&arcs);
        if dn.get(&ty).is_some() {
            return Err(format!(
                "subject: attribute {oid} appears more than once; one value per attribute is supported"
            ));
        }
        let value = attr.attr_value();
        let text = std::str::from_utf8(value.data)
            .map_err(|_| format!("subject: attribute {oid} is not valid text"))?;
        let dn_value = match value.header.tag() {
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| format!("subject: attribute {oid} is not a PrintableString"))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text.try_into()
                    .map_err(|_| format!("subject: attribute {oid} is not an IA5String"))?,
            ),
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            other => {
                return Err(format!(
                    "subject: attribute {oid} has unsupported string type {other}"
                ));
            }
        };
        dn.push(ty, dn_value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keys::generate_key_for;

    fn spec() -> CertificateSpec {
        serde_json::from_value(serde_json::json!({
            "secretName": "web-tls",
            "commonName": "web.example.com",
            "dnsNames": ["web.example.com", "*.web.example.com"],
            "ipAddresses": ["10.0.0.1", "2001:db8::1"],
            "uris": ["spiffe://example.com/ns/web/sa/web"],
            "emailAddresses": ["ops@example.com"],
            "subject": {"organizations": ["Example Ltd"], "countries": ["GB"], "serialNumber": "42"},
            "productRef": {"name": "tls"},
        }))
        .unwrap()
    }

    #[test]
    fn a_built_csr_parses_back_with_its_names_and_key() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa2048,
        ] {
            let key = generate_key_for(alg).unwrap();
            let csr = build_csr(&spec(), &key).unwrap();
            let parsed = parse_csr(&csr).unwrap();
            let known = parse_csr_with(&csr, Possession::Known).unwrap();
            let reading = |c: &ParsedCsr| {
                let names: Vec<_> = c.distinguished_name.iter().collect();
                format!(
                    "{} {:?} {:?} {:?} {:?} {names:?}",
                    c.subject,
                    c.common_name,
                    c.subject_alt_names,
                    c.key_algorithm,
                    c.public_key_der
                )
            };
            assert_eq!(reading(&known), reading(&parsed));
            assert_eq!(parsed.key_algorithm, alg);
            assert_eq!(parsed.public_key_der, key.public_key_der());
            assert_eq!(parsed.common_name.as_deref(), Some("web.example.com"));
            assert_eq!(
                parsed.subject,
                "C=GB, O=Example Ltd, CN=web.example.com, serialNumber=42"
            );
            let sans = parsed.subject_alt_names;
            assert_eq!(sans.dns_names, ["web.example.com", "*.web.example.com"]);
            assert_eq!(
                sans.ip_addresses,
                [
                    "10.0.0.1".parse::<IpAddr>().unwrap(),
                    "2001:db8::1".parse().unwrap()
                ]
            );
            assert_eq!(sans.uris, ["spiffe://example.com/ns/web/sa/web"]);
            assert_eq!(sans.email_addresses, ["ops@example.com"]);
        }
    }

    #[test]
    fn bad_spec_values_name_the_field() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let cases: [(&str, serde_json::Value, &str); 6] = [
            (
                "dnsNames",
                serde_json::json!(["ok.example", "bad_name.example"]),
                "dnsNames[1]",
            ),
            (
                "ipAddresses",
                serde_json::json!(["10.0.0.300"]),
                "ipAddresses[0]",
            ),
            ("uris", serde_json::json!(["not a uri"]), "uris[0]"),
            (
                "emailAddresses",
                serde_json::json!(["nobody"]),
                "emailAddresses[0]",
            ),
            (
                "subject",
                serde_json::json!({"organizations": ["A", "B"]}),
                "subject.organizations",
            ),
            ("commonName", serde_json::json!(""), "commonName"),
        ];
        for (field, value, want) in cases {
            let mut s = serde_json::to_value(spec()).unwrap();
            s[field] = value;
            let s: CertificateSpec = serde_json::from_value(s).unwrap();
            let err = build_csr(&s, &key).unwrap_err().to_string();
            assert!(err.starts_with(want), "{field}: {err}");
        }
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let key = generate_key_for(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = build_csr(&spec(), &key).unwrap();
        let mut der = pem::parse(&csr).unwrap().into_contents();
        // Flip a byte of the common name inside the signed part.
        let at = der
            .windows(b"web.example.com".len())
            .position(|w| w == b"web.example.com")
            .unwrap();
        der[at] = b'x';
        let tampered = crate::pki::to_pem("CERTIFICATE REQUEST", &der);
        let err = parse_csr(&tampered).unwrap_err().to_string();
        assert!(err.contains("signature does not verify"), "{err}");
        // Only the signature is taken on trust for a CSR known to be built here.
        let known = parse_csr_with(&tampered, Possession::Known).unwrap();
        assert_eq!(known.common_name.as_deref(), Some("xeb.example.com"));
        let err = parse_csr(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("CSR: not a PKCS#10 request"), "{err}");
    }
}
