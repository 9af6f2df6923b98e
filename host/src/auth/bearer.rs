//! Credentials in requests: the one rule for `Authorization: Bearer`, an
//! axum extractor for it, and the one constant-time comparison of secrets.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// The credential of `Authorization: Bearer <credential>`: the scheme is
/// case-insensitive (RFC 9110), surrounding whitespace is ignored, an empty
/// credential counts as none.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Extracts the Bearer credential of a request, if it has one.
pub struct Bearer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self(bearer(&parts.headers).map(str::to_owned)))
    }
}

/// A secret kept as its sha256, so that comparing a candidate takes the same
/// time whatever its length or content.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    pub fn new(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `candidate` is this secret, in constant time.
    pub fn matches(&self, candidate: &str) -> bool {
        let c: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        self.0.iter().zip(c).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn one_rule_for_bearer_credentials() {
        assert_eq!(bearer(&auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&auth("bearer abc ")), Some("abc"));
        assert_eq!(bearer(&auth("BEARER  abc")), Some("abc"));
        assert_eq!(bearer(&auth("Bearer ")), None);
        assert_eq!(bearer(&auth("Basic abc")), None);
        assert_eq!(bearer(&auth("Bearerabc")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn only_the_exact_secret_matches() {
        let t = Secret::new("s3cret");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3cret "));
        assert!(!t.matches(""));
    }
}
