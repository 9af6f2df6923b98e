//! Minting development tokens (`portico token mint`).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};

/// An HS256 token for `sub`, valid for `ttl_secs` (negative: already expired),
/// with extra string claims.
pub fn mint(
    secret: &str,
    sub: &str,
    ttl_secs: i64,
    claims: &[(String, String)],
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut body = serde_json::Map::new();
    for (k, v) in claims {
        body.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    body.insert("sub".into(), sub.into());
    body.insert("iat".into(), now.into());
    body.insert("exp".into(), (now + ttl_secs).into());
    jsonwebtoken::encode(
        &Header::default(),
        &body,
        &EncodingKey::from_secret(secret.as_bytes())?,
    )
}
