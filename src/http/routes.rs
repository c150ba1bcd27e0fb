use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{web, HttpResponse};

use super::{admin, download, form, health, openapi, tus};
use crate::error::ApiError;

/// `/files` is tus; `/uploads` is one-shot multipart.
/// Mounts every surface. `/metrics` is left out when it has a listener of its own.
pub fn configure(cfg: &mut web::ServiceConfig, metrics_here: bool) {
    // Malformed query strings and JSON bodies get the same JSON errors as everything else.
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_query", err.to_string()).into()),
    )
    .app_data(
        web::JsonConfig::default()
            .limit(16 * 1024)
            .error_handler(|err, _| ApiError::bad_request("invalid_json", err.to_string()).into()),
    );
    let options = || web::method(Method::OPTIONS).to(tus::options);
    // One resource per path, so that a known path with a method it does not take answers
    // 405 with `Allow` (as tusd does) instead of falling through to 404.
    cfg.service(
        web::scope(tus::FILES_PATH)
            .wrap(DefaultHeaders::new().add(("Tus-Resumable", tus::TUS_VERSION)))
            .service(
                web::resource(["", "/"])
                    .route(options())
                    .route(web::post().to(tus::create))
                    .default_service(web::to(|| method_not_allowed("OPTIONS, POST"))),
            )
            .service(
                web::resource("/{id}")
                    .route(options())
                    .route(web::head().to(tus::head))
                    .route(web::patch().to(tus::patch))
                    .route(web::delete().to(tus::terminate))
                    .route(web::get().to(download::download))
                    .default_service(web::to(|| method_not_allowed("OPTIONS, HEAD, PATCH, DELETE, GET"))),
            )
            .default_service(web::to(not_found)),
    )
    .route("/uploads", web::post().to(form::upload_form))
    .route("/downloads/{id}", web::get().to(download::signed_download))
    .service(
        web::scope("/admin")
            .route("/uploads", web::get().to(admin::list))
            .route("/uploads/{id}", web::get().to(admin::show))
            .route("/uploads/{id}", web::delete().to(admin::terminate))
            .route("/uploads/{id}/expiry", web::put().to(admin::set_expiry))
            .route("/stats", web::get().to(admin::stats))
            .route("/sessions", web::get().to(admin::sessions)),
    )
    .service(utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::document().clone()))
    .route("/health/live", web::get().to(health::live))
    .route("/health/ready", web::get().to(health::ready))
    .default_service(web::to(not_found));
    if metrics_here {
        cfg.route("/metrics", web::get().to(health::metrics));
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NoRoute)
}

async fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}

/// `X-HTTP-Method-Override`: clients behind proxies that only pass GET/POST send PATCH
/// and DELETE as POST with this header. It is applied before routing.
pub async fn method_override(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    if req.method() == Method::POST {
        let wanted = req.headers().get("X-HTTP-Method-Override").and_then(|v| v.to_str().ok()).and_then(|v| {
            match v.trim().to_ascii_uppercase().as_str() {
                "PATCH" => Some(Method::PATCH),
                "DELETE" => Some(Method::DELETE),
                "HEAD" => Some(Method::HEAD),
                "GET" => Some(Method::GET),
                "OPTIONS" => Some(Method::OPTIONS),
                _ => None,
            }
        });
        if let Some(method) = wanted {
            req.head_mut().method = method;
        }
    }
    next.call(req).await
}
