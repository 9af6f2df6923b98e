//! Verification keys, each pinned to exactly one algorithm: from the config
//! (`jwt_secret`, `[[auth.keys]]`) or from a JWKS document.

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::error::AuthError;
use crate::config::KeyConfig;

/// A key and the one algorithm it accepts.
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    pub(super) key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn bad(what: &str, e: impl std::fmt::Display) -> AuthError {
    AuthError::BadKey(format!("{what}: {e}"))
}

impl Key {
    /// The HS256 key of `jwt_secret` / `--jwt-secret`.
    pub(super) fn hs256(secret: &str) -> Result<Self, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::BadKey("jwt_secret is empty".into()));
        }
        Ok(Self {
            kid: None,
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.as_bytes()).map_err(|e| bad("jwt_secret", e))?,
        })
    }

    /// One `[[auth.keys]]` entry.
    pub(super) fn from_config(c: &KeyConfig) -> Result<Self, AuthError> {
        let name = format!("key {}", c.kid.as_deref().unwrap_or("(no kid)"));
        let alg = Algorithm::from_str(&c.alg).map_err(|_| {
            bad(
                &name,
                format!(
                    "unknown alg {:?} (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)",
                    c.alg
                ),
            )
        })?;
        let pem = match (&c.pem, &c.pem_file) {
            (Some(p), None) => Some(p.as_bytes().to_vec()),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .map_err(|e| bad(&name, format!("cannot read {}: {e}", path.display())))?,
            ),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(bad(&name, "set pem or pem_file, not both")),
        };
        let key = match (alg, &c.secret, pem) {
            (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, Some(s), None) => {
                if s.is_empty() {
                    return Err(bad(&name, "secret is empty"));
                }
                DecodingKey::from_secret(s.as_bytes())
            }
            (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, _, _) => {
                return Err(bad(&name, format!("{:?} needs `secret` (and no PEM)", alg)));
            }
            (_, Some(_), _) | (_, None, None) => {
                return Err(bad(
                    &name,
                    format!("{alg:?} needs a public key in `pem` or `pem_file` (and no secret)"),
                ));
            }
            (
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
                None,
                Some(pem),
            ) => DecodingKey::from_rsa_pem(&pem),
            (Algorithm::ES256 | Algorithm::ES384, None, Some(pem)) => {
                DecodingKey::from_ec_pem(&pem)
            }
            (Algorithm::EdDSA, None, Some(pem)) => DecodingKey::from_ed_pem(&pem),
            (other, None, Some(_)) => {
                return Err(bad(&name, format!("{other:?} is not supported")));
            }
        }
        .map_err(|e| bad(&name, e))?;
        Ok(Self {
            kid: c.kid.clone(),
            alg,
            key,
        })
    }

    /// A JWKS entry. Its algorithm is its `alg`, else implied by the key type
    /// (RSA: RS256, EC P-256: ES256, P-384: ES384, Ed25519: EdDSA); a
    /// symmetric key must name its `alg`.
    pub(super) fn from_jwk(jwk: &Jwk) -> Result<Self, AuthError> {
        let name = format!(
            "JWKS key {}",
            jwk.common.key_id.as_deref().unwrap_or("(no kid)")
        );
        let alg = match jwk.common.key_algorithm {
            Some(a) => Algorithm::try_from(a).map_err(|e| bad(&name, e))?,
            None => match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                    Algorithm::ES384
                }
                AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                _ => return Err(bad(&name, "no `alg` and none implied by the key type")),
            },
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&name, e))?;
        if key.family() != alg.family() {
            return Err(bad(&name, format!("key type does not fit alg {alg:?}")));
        }
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        })
    }
}
