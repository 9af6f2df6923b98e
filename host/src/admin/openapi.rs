//! The OpenAPI document of the admin API, generated from the handlers.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{plugins, presence, revisions};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portico admin API",
        description = "Hot-load, roll back, canary and remove WebAssembly plugins. Every route needs `Authorization: Bearer <admin token>`; errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        plugins::list_plugins,
        plugins::get_plugin,
        plugins::put_plugin,
        plugins::delete_plugin,
        revisions::list_versions,
        revisions::rollback,
        revisions::promote,
        presence::channel_presence,
    ),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
    tags(
        (name = "plugins", description = "Mounted plugins"),
        (name = "versions", description = "Revisions, rollback and canary promotion"),
        (name = "presence", description = "Who is in a channel, across nodes"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served at `/admin/v1/openapi.json`.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_route() {
        let doc = super::document();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/admin/v1/plugins",
            "/admin/v1/plugins/{name}",
            "/admin/v1/plugins/{name}/versions",
            "/admin/v1/plugins/{name}/rollback",
            "/admin/v1/plugins/{name}/promote",
            "/admin/v1/plugins/{name}/presence/{channel}",
        ] {
            assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
        }
        assert!(
            doc["paths"]["/admin/v1/plugins/{name}"]["put"]["requestBody"]["content"]
                .get("application/wasm")
                .is_some()
        );
    }
}
