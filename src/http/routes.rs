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
    // 405 with `Allow` (as tusd does) instead of falling through to 404. Every path below
    // does the same.
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
    .service(
        web::resource("/uploads")
            .route(web::post().to(form::upload_form))
            .default_service(web::to(|| method_not_allowed("POST"))),
    )
    .service(
        web::resource("/downloads/{id}")
            .route(web::get().to(download::signed_download))
            .default_service(web::to(|| method_not_allowed("GET"))),
    )
    .service(
        web::scope("/admin")
            .service(
                web::resource("/uploads")
                    .route(web::get().to(admin::list))
                    .default_service(web::to(|| method_not_allowed("GET"))),
            )
            .service(
                web::resource("/uploads/{id}")
                    .route(web::get().to(admin::show))
                    .route(web::delete().to(admin::terminate))
                    .default_service(web::to(|| method_not_allowed("GET, DELETE"))),
            )
            .service(
                web::resource("/uploads/{id}/expiry")
                    .route(web::put().to(admin::set_expiry))
                    .default_service(web::to(|| method_not_allowed("PUT"))),
            )
            .service(
                web::resource("/stats")
                    .route(web::get().to(admin::stats))
                    .default_service(web::to(|| method_not_allowed("GET"))),
            )
            .service(
                web::resource("/sessions")
                    .route(web::get().to(admin::sessions))
                    .default_service(web::to(|| method_not_allowed("GET"))),
            ),
    )
    .service(utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi::document().clone()))
    // Swagger UI's routes take GET only and let other methods fall through to here.
    .service(web::resource(["/openapi.json", "/docs/{_:.*}"]).to(|| method_not_allowed("GET")))
    .service(
        web::resource("/health/live")
            .route(web::get().to(health::live))
            .default_service(web::to(|| method_not_allowed("GET"))),
    )
    .service(
        web::resource("/health/ready")
            .route(web::get().to(health::ready))
            .default_service(web::to(|| method_not_allowed("GET"))),
    )
    .default_service(web::to(not_found));
    if metrics_here {
        cfg.service(
            web::resource("/metrics")
                .route(web::get().to(health::metrics))
                .default_service(web::to(|| method_not_allowed("GET"))),
        );
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
