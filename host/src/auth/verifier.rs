//! JWT verification with the algorithm pinned per key: a token's header may
//! only select a key whose algorithm it names, so `none` and HS/RS confusion
//! cannot get through.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};

use super::error::AuthError;
use super::jwks::Jwks;
use super::keys::Key;
use crate::config::AuthConfig;
use crate::plugins::Principal;

/// Verifies tokens against the configured keys and claims.
pub struct Verifier {
    keys: Vec<Key>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    require_exp: bool,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Principal,
    /// `exp`, in seconds since the epoch.
    pub expires_at: Option<u64>,
}

impl Verifier {
    pub fn from_config(c: &AuthConfig) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        if let Some(secret) = &c.jwt_secret {
            keys.push(Key::hs256(secret)?);
        }
        for k in &c.keys {
            keys.push(Key::from_config(k)?);
        }
        let jwks = c
            .jwks_file
            .as_ref()
            .map(|p| Jwks::open(p.clone(), Duration::from_secs(c.jwks_reload_secs)))
            .transpose()?;
        Ok(Self {
            keys,
            jwks,
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            leeway: c.leeway_secs,
            require_exp: c.require_exp,
        })
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty() || self.jwks.is_some()
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        if !self.has_keys() {
            return Err(AuthError::NotConfigured);
        }
        let header = read_header(token)?;
        // An algorithm jsonwebtoken does not know, such as `none`, is refused here.
        let alg = Algorithm::from_str(&header.alg)
            .map_err(|_| AuthError::Algorithm(header.alg.clone()))?;
        let jwks = self.jwks.as_ref().map(Jwks::keys);
        let all = || {
            self.keys
                .iter()
                .chain(jwks.iter().flat_map(|keys| keys.iter()))
        };
        let named: Vec<&Key> = match &header.kid {
            // A `kid` is only meaningful when some key has one.
            Some(kid) if all().any(|k| k.kid.is_some()) => {
                let named: Vec<&Key> = all().filter(|k| k.kid.as_ref() == Some(kid)).collect();
                if named.is_empty() {
                    return Err(AuthError::UnknownKey(kid.clone()));
                }
                named
            }
            _ => all().collect(),
        };
        let candidates: Vec<&Key> = named.into_iter().filter(|k| k.alg == alg).collect();
        if candidates.is_empty() {
            return Err(AuthError::Algorithm(header.alg));
        }
        if !header.signature_ok {
            return Err(AuthError::BadSignature);
        }

        let v = self.validation(alg);
        // Several keys may share an algorithm (rotation without `kid`): the
        // first whose signature matches decides.
        let mut result = Err(AuthError::BadSignature);
        for key in candidates {
            result = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token, &key.key, &v,
            )
            .map_err(map_error);
            if !matches!(result, Err(AuthError::BadSignature)) {
                break;
            }
        }
        let claims = result?.claims;
        Ok(Verified {
            expires_at: claims
                .get("exp")
                .and_then(|e| e.as_f64())
                .map(|e| e.max(0.0) as u64),
            principal: Principal {
                subject: claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned),
                claims_json: serde_json::Value::Object(claims).to_string(),
            },
        })
    }

    /// What jsonwebtoken checks besides the signature.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.validate_exp = true;
        v.required_spec_claims.clear();
        if self.require_exp {
            v.required_spec_claims.insert("exp".into());
        }
        // jsonwebtoken checks `iss`/`aud` only when present: a configured
        // value must also be required, or a token without it would pass.
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".into());
        }
        v
    }
}

struct RawHeader {
    alg: String,
    kid: Option<String>,
    /// The signature part is non-empty base64url (a truncated or mangled one
    /// is a bad signature, not a malformed token).
    signature_ok: bool,
}

/// Read `alg` and `kid` ourselves, so an algorithm jsonwebtoken does not know
/// (such as `none`) is reported as an algorithm problem, not as garbage.
fn read_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = b64
        .decode(header)
        .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    let h: Header = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("header is not a JSON object with alg".into()))?;
    Ok(RawHeader {
        alg: h.alg,
        kid: h.kid,
        signature_ok: !signature.is_empty() && b64.decode(signature).is_ok(),
    })
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEddsaKey => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::Algorithm("of the header".into()),
        _ => AuthError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mint;
    use crate::config::KeyConfig;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("testdata/ec_public.pem");

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn key(kid: &str, alg: &str, secret: Option<&str>, pem: Option<&str>) -> KeyConfig {
        KeyConfig {
            kid: Some(kid.into()),
            alg: alg.into(),
            secret: secret.map(Into::into),
            pem: pem.map(Into::into),
            pem_file: None,
        }
    }

    /// HS256 secret without kid, plus RS256, ES256 and HS512 keys by kid.
    fn config() -> AuthConfig {
        AuthConfig {
            jwt_secret: Some("s3cret".into()),
            issuer: Some("portico-tests".into()),
            audience: Some("chat".into()),
            leeway_secs: 0,
            keys: vec![
                key("rsa1", "RS256", None, Some(RSA_PUBLIC)),
                key("ec1", "ES256", None, Some(EC_PUBLIC)),
                key("hs512", "HS512", Some("another secret"), None),
            ],
            ..AuthConfig::default()
        }
    }

    fn claims() -> serde_json::Value {
        json!({ "sub": "alice", "iss": "portico-tests", "aud": "chat", "exp": now() + 60 })
    }

    fn with(extra: serde_json::Value) -> serde_json::Value {
        let mut c = claims();
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn sign(
        alg: Algorithm,
        kid: Option<&str>,
        body: &serde_json::Value,
        key: &EncodingKey,
    ) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(Into::into);
        jsonwebtoken::encode(&h, body, key).unwrap()
    }

    fn hs(body: &serde_json::Value) -> String {
        sign(
            Algorithm::HS256,
            None,
            body,
            &EncodingKey::from_secret(b"s3cret").unwrap(),
        )
    }

    fn rs(body: &serde_json::Value) -> String {
        sign(
            Algorithm::RS256,
            Some("rsa1"),
            body,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
    }

    fn es(body: &serde_json::Value) -> String {
        sign(
            Algorithm::ES256,
            Some("ec1"),
            body,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
    }

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    /// `header.payload` signed with HMAC-SHA256 by hand (for payloads serde would not produce).
    fn hs_raw(header: &str, payload: &[u8], secret: &[u8]) -> String {
        let unsigned = format!("{}.{}", b64(header.as_bytes()), b64(payload));
        let key = EncodingKey::from_secret(secret).unwrap();
        let sig = jsonwebtoken::crypto::sign(unsigned.as_bytes(), &key, Algorithm::HS256).unwrap();
        format!("{unsigned}.{sig}")
    }

    #[test]
    fn minted_token_verifies_with_its_claims() {
        let v = Verifier::from_config(&AuthConfig {
            jwt_secret: Some("s3cret".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        let t = mint("s3cret", "alice", 60, &[("role".into(), "admin".into())]).unwrap();
        let ok = v.verify(&t).unwrap();
        assert_eq!(ok.principal.subject.as_deref(), Some("alice"));
        assert!(ok.principal.claims_json.contains("\"role\":\"admin\""));
        assert!(ok.expires_at.unwrap() as i64 >= now() + 59);
    }

    #[test]
    fn every_configured_algorithm_verifies() {
        let v = Verifier::from_config(&config()).unwrap();
        for t in [hs(&claims()), rs(&claims()), es(&claims())] {
            assert_eq!(
                v.verify(&t).unwrap().principal.subject.as_deref(),
                Some("alice")
            );
        }
        let hs512 = sign(
            Algorithm::HS512,
            Some("hs512"),
            &claims(),
            &EncodingKey::from_secret(b"another secret").unwrap(),
        );
        assert!(v.verify(&hs512).is_ok());
    }

    #[test]
    fn every_bad_token_gets_its_code() {
        let v = Verifier::from_config(&config()).unwrap();
        let code = |t: &str| v.verify(t).map(|_| "accepted").unwrap_or_else(|e| e.code());
        let good = hs(&claims());
        let (head, rest) = good.split_once('.').unwrap();
        let (body, sig) = rest.split_once('.').unwrap();
        let rs_good = rs(&claims());
        let es_good = es(&claims());
        let cases: Vec<(&str, String, &str)> = vec![
            ("garbage", "garbage".into(), "token_malformed"),
            ("two parts", format!("{head}.{body}"), "token_malformed"),
            (
                "header not base64",
                format!("%%%.{body}.{sig}"),
                "token_malformed",
            ),
            (
                "alg none",
                format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
                "token_algorithm",
            ),
            (
                "HS256 signed with the RSA public key (alg confusion)",
                sign(
                    Algorithm::HS256,
                    Some("rsa1"),
                    &claims(),
                    &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
                ),
                "token_algorithm",
            ),
            (
                "RS384 is not configured",
                sign(
                    Algorithm::RS384,
                    None,
                    &claims(),
                    &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
                ),
                "token_algorithm",
            ),
            (
                "wrong secret",
                sign(
                    Algorithm::HS256,
                    None,
                    &claims(),
                    &EncodingKey::from_secret(b"nope").unwrap(),
                ),
                "token_bad_signature",
            ),
            (
                "HS truncated signature",
                good[..good.len() - 2].into(),
                "token_bad_signature",
            ),
            (
                "HS signature cut by one",
                good[..good.len() - 1].into(),
                "token_bad_signature",
            ),
            (
                "RS truncated signature",
                rs_good[..rs_good.len() - 4].into(),
                "token_bad_signature",
            ),
            (
                "ES truncated signature",
                es_good[..es_good.len() - 4].into(),
                "token_bad_signature",
            ),
            (
                "empty signature",
                format!("{head}.{body}."),
                "token_bad_signature",
            ),
            (
                "payload swapped under a valid signature",
                format!(
                    "{head}.{}.{sig}",
                    b64(with(json!({"sub": "mallory"})).to_string().as_bytes())
                ),
                "token_bad_signature",
            ),
            (
                "expired",
                hs(&with(json!({"exp": now() - 5}))),
                "token_expired",
            ),
            (
                "nbf in the future",
                hs(&with(json!({"nbf": now() + 60}))),
                "token_not_yet_valid",
            ),
            (
                "wrong iss",
                hs(&with(json!({"iss": "evil"}))),
                "token_wrong_issuer",
            ),
            (
                "no iss",
                hs(&with(json!({"iss": null}))),
                "token_missing_claim",
            ),
            (
                "wrong aud",
                hs(&with(json!({"aud": "other"}))),
                "token_wrong_audience",
            ),
            (
                "no exp",
                hs(&with(json!({"exp": null}))),
                "token_missing_claim",
            ),
            (
                "unknown kid",
                sign(
                    Algorithm::RS256,
                    Some("rsa-retired"),
                    &claims(),
                    &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
                ),
                "token_unknown_key",
            ),
            (
                "claims not JSON",
                hs_raw(
                    r#"{"alg":"HS256","typ":"JWT"}"#,
                    b"not json at all",
                    b"s3cret",
                ),
                "token_malformed",
            ),
            (
                "claims a JSON array",
                hs_raw(r#"{"alg":"HS256","typ":"JWT"}"#, b"[1,2]", b"s3cret"),
                "token_malformed",
            ),
        ];
        for (what, token, expected) in cases {
            assert_eq!(code(&token), expected, "{what}");
        }
    }

    #[test]
    fn exp_is_optional_only_when_configured() {
        let v = Verifier::from_config(&AuthConfig {
            jwt_secret: Some("s3cret".into()),
            require_exp: false,
            ..AuthConfig::default()
        })
        .unwrap();
        let ok = v.verify(&hs(&json!({ "sub": "alice" }))).unwrap();
        assert_eq!(ok.expires_at, None);
        // Present, it is still enforced.
        let expired = hs(&json!({ "sub": "alice", "exp": now() - 120 }));
        assert_eq!(v.verify(&expired).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn leeway_applies_to_exp_and_nbf() {
        let v = Verifier::from_config(&AuthConfig {
            jwt_secret: Some("s3cret".into()),
            leeway_secs: 30,
            ..AuthConfig::default()
        })
        .unwrap();
        assert!(v.verify(&hs(&json!({ "exp": now() - 10 }))).is_ok());
        assert!(
            v.verify(&hs(&json!({ "exp": now() + 60, "nbf": now() + 10 })))
                .is_ok()
        );
        assert_eq!(
            v.verify(&hs(&json!({ "exp": now() - 60 }))).unwrap_err(),
            AuthError::Expired
        );
    }

    #[test]
    fn bad_key_config_fails_at_start() {
        let broken = [
            key("a", "HS256", None, None),
            key("b", "RS256", Some("secret"), None),
            key("c", "RS256", None, Some("not a pem")),
            key("d", "HS256", Some("x"), Some(RSA_PUBLIC)),
            key("e", "none", Some("x"), None),
            key("f", "HS256", Some(""), None),
        ];
        for k in broken {
            let kid = k.kid.clone();
            let c = AuthConfig {
                keys: vec![k],
                ..AuthConfig::default()
            };
            assert!(
                matches!(Verifier::from_config(&c), Err(AuthError::BadKey(_))),
                "{kid:?}"
            );
        }
    }

    #[test]
    fn jwks_keys_are_picked_by_kid_and_reloaded_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("portico-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        let jwk = |kid: &str, pem: &str, alg: Algorithm| {
            let enc = if alg == Algorithm::RS256 {
                EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
            } else {
                EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
            };
            let mut j =
                serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).unwrap())
                    .unwrap();
            j["kid"] = kid.into();
            j
        };
        let write = |keys: Vec<serde_json::Value>| {
            std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
        };
        write(vec![jwk("rsa1", RSA_PRIVATE, Algorithm::RS256)]);
        let v = Verifier::from_config(&AuthConfig {
            jwks_file: Some(path.clone()),
            jwks_reload_secs: 0,
            leeway_secs: 0,
            ..AuthConfig::default()
        })
        .unwrap();
        let body = json!({ "sub": "alice", "exp": now() + 60 });
        assert!(v.verify(&rs(&body)).is_ok());
        assert_eq!(
            v.verify(&es(&body)).unwrap_err().code(),
            "token_unknown_key"
        );

        // Rotation: ec1 replaces rsa1. mtime granularity can be coarse: make it differ.
        write(vec![
            jwk("ec1", EC_PRIVATE, Algorithm::ES256),
            json!({ "kty": "oct", "k": "c2VjcmV0", "use": "enc" }),
            json!({ "kty": "weird" }),
        ]);
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(v.verify(&es(&body)).is_ok());
        assert_eq!(
            v.verify(&rs(&body)).unwrap_err().code(),
            "token_unknown_key"
        );

        // A broken file keeps the last good keys.
        std::fs::write(&path, "{ not json").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        assert!(v.verify(&es(&body)).is_ok());
        std::fs::remove_dir_all(&dir).ok();
    }
}
