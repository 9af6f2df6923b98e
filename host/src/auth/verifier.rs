//! JWT verification with the algorithm pinned per key: a token's header may
//! only select a key whose algorithm it names, so `none` and HS/RS confusion
//! cannot get through.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use super::error::AuthError;
use crate::config::AuthConfig;
use crate::plugins::Principal;

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens against the configured keys and claims.
pub struct Verifier {
    keys: Vec<Key>,
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
            let key = DecodingKey::from_secret(secret.as_bytes())
                .map_err(|e| AuthError::BadKey(e.to_string()))?;
            keys.push(Key {
                kid: None,
                alg: Algorithm::HS256,
                key,
            });
        }
        Ok(Self {
            keys,
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            leeway: c.leeway_secs,
            require_exp: c.require_exp,
        })
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        if self.keys.is_empty() {
            return Err(AuthError::NotConfigured);
        }
        let (alg, kid) = read_header(token)?;
        let key = self.select(&alg, kid.as_deref())?;

        let mut v = Validation::new(key.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        v.required_spec_claims.clear();
        if self.require_exp {
            v.required_spec_claims.insert("exp".into());
        }
        v.validate_exp = true;
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
                .map_err(map_error)?;
        let claims = data.claims;
        Ok(Verified {
            principal: Principal {
                subject: claims
                    .get("sub")
                    .and_then(|s| s.as_str())
                    .map(str::to_owned),
                claims_json: serde_json::Value::Object(claims.clone()).to_string(),
            },
            expires_at: claims.get("exp").and_then(|e| e.as_u64()),
        })
    }

    fn select(&self, alg: &str, kid: Option<&str>) -> Result<&Key, AuthError> {
        let by_alg = |k: &&Key| format!("{:?}", k.alg) == alg;
        match kid {
            Some(kid) if self.keys.iter().any(|k| k.kid.is_some()) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or_else(|| AuthError::UnknownKey(kid.to_owned()))
                .and_then(|k| {
                    if by_alg(&k) {
                        Ok(k)
                    } else {
                        Err(AuthError::Algorithm(alg.to_owned()))
                    }
                }),
            _ => self
                .keys
                .iter()
                .find(by_alg)
                .ok_or_else(|| AuthError::Algorithm(alg.to_owned())),
        }
    }
}

/// Read `alg` and `kid` ourselves, so an algorithm jsonwebtoken does not know
/// (such as `none`) is reported as an algorithm problem, not as garbage.
fn read_header(token: &str) -> Result<(String, Option<String>), AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    let h: Header = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("header is not a JSON object with alg".into()))?;
    Ok((h.alg, h.kid))
}

fn map_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::Algorithm("of the header".into()),
        ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => AuthError::Malformed(e.to_string()),
        _ => AuthError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mint;

    fn verifier() -> Verifier {
        Verifier::from_config(&AuthConfig {
            jwt_secret: Some("s3cret".into()),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn minted_token_verifies_with_its_claims() {
        let t = mint("s3cret", "alice", 60, &[("role".into(), "admin".into())]).unwrap();
        let v = verifier().verify(&t).unwrap();
        assert_eq!(v.principal.subject.as_deref(), Some("alice"));
        assert!(v.principal.claims_json.contains("\"role\":\"admin\""));
        assert!(v.expires_at.is_some());
    }

    #[test]
    fn bad_tokens_get_precise_errors() {
        let v = verifier();
        let wrong = mint("other", "alice", 60, &[]).unwrap();
        assert_eq!(v.verify(&wrong).unwrap_err(), AuthError::BadSignature);
        let expired = mint("s3cret", "alice", -120, &[]).unwrap();
        assert_eq!(v.verify(&expired).unwrap_err(), AuthError::Expired);
        assert!(matches!(
            v.verify("garbage").unwrap_err(),
            AuthError::Malformed(_)
        ));
        // {"alg":"none","typ":"JWT"} . {"sub":"x"} . (empty signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.";
        assert!(matches!(
            v.verify(none).unwrap_err(),
            AuthError::Algorithm(_)
        ));
    }
}
