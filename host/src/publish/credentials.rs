//! Who may publish: a configured API key, or a JWT carrying the configured role.

use super::error::PublishError;
use crate::auth::{Secret, Verifier};
use crate::config::ApiConfig;

/// Check the `Authorization: Bearer` credential.
pub(super) fn authorize(
    api: &ApiConfig,
    verifier: &Verifier,
    presented: Option<&str>,
) -> Result<(), PublishError> {
    let presented = presented.ok_or(PublishError::Missing)?;
    // Compare against every key, without stopping early, in constant time per key.
    let key_ok = api
        .keys
        .iter()
        .filter(|k| !k.is_empty())
        .fold(false, |ok, k| ok | Secret::new(k).matches(presented));
    if key_ok {
        return Ok(());
    }
    let Some(role) = &api.publish_role else {
        return Err(PublishError::BadKey);
    };
    if presented.split('.').count() != 3 {
        return Err(PublishError::BadKey);
    }
    let verified = verifier.verify(presented).map_err(PublishError::Token)?;
    let claims: serde_json::Value =
        serde_json::from_str(&verified.principal.claims_json).unwrap_or_default();
    let has_role = match claims.get(&api.role_claim) {
        Some(serde_json::Value::String(r)) => r == role,
        Some(serde_json::Value::Array(rs)) => rs.iter().any(|r| r.as_str() == Some(role)),
        _ => false,
    };
    if has_role {
        Ok(())
    } else {
        Err(PublishError::Forbidden(role.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mint;
    use crate::config::AuthConfig;
    use axum::http::HeaderMap;

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {v}").parse().unwrap());
        h
    }

    fn setup() -> (ApiConfig, Verifier) {
        let api = ApiConfig {
            keys: vec!["k1".into(), "".into()],
            publish_role: Some("publisher".into()),
            ..ApiConfig::default()
        };
        let v = Verifier::from_config(&AuthConfig {
            jwt_secret: Some("s".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        (api, v)
    }

    #[test]
    fn keys_and_role_tokens_are_accepted() {
        let (api, v) = setup();
        assert!(authorize(&api, &v, crate::auth::bearer(&bearer("k1"))).is_ok());
        let t = mint("s", "svc", 60, &[("role".into(), "publisher".into())]).unwrap();
        assert!(authorize(&api, &v, crate::auth::bearer(&bearer(&t))).is_ok());
    }

    #[test]
    fn everything_else_is_refused_precisely() {
        let (api, v) = setup();
        let err = |h: &HeaderMap| authorize(&api, &v, crate::auth::bearer(h)).unwrap_err();
        assert!(matches!(err(&HeaderMap::new()), PublishError::Missing));
        assert!(matches!(err(&bearer("")), PublishError::Missing));
        assert!(matches!(err(&bearer("k2")), PublishError::BadKey));
        assert!(matches!(err(&bearer("k1x")), PublishError::BadKey));
        let user = mint("s", "alice", 60, &[("role".into(), "reader".into())]).unwrap();
        assert!(matches!(err(&bearer(&user)), PublishError::Forbidden(_)));
        let forged = mint("other", "svc", 60, &[("role".into(), "publisher".into())]).unwrap();
        assert!(matches!(err(&bearer(&forged)), PublishError::Token(_)));
        // Without a configured role, tokens are just wrong keys.
        let no_role = ApiConfig {
            publish_role: None,
            ..api.clone()
        };
        let t = mint("s", "svc", 60, &[("role".into(), "publisher".into())]).unwrap();
        assert!(matches!(
            authorize(&no_role, &v, crate::auth::bearer(&bearer(&t))),
            Err(PublishError::BadKey)
        ));
    }
}
