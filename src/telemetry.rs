//! slog: one JSON line per request and per notable event (a readable terminal format in
//! development). Request ids are accepted from `X-Request-Id` or made up, and returned.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use slog::{o, Drain};

use crate::config::{LogFormat, LogSettings};
use crate::state::AppState;

pub fn build_logger(settings: &LogSettings) -> anyhow::Result<slog::Logger> {
    if settings.level == "off" {
        return Ok(slog::Logger::root(slog::Discard, o!()));
    }
    let level: slog::Level = settings.level.parse().map_err(|_| {
        anyhow::anyhow!("log.level {:?} is not one of error, warn, info, debug, trace, off", settings.level)
    })?;
    let logger = match settings.format {
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stdout()).add_default_keys().build().fuse();
            let drain = slog_async::Async::new(drain).build().filter_level(level).fuse();
            slog::Logger::root(drain, o!("service" => "hoist"))
        }
        LogFormat::Term => {
            let decorator = slog_term::TermDecorator::new().stdout().build();
            let drain = slog_term::CompactFormat::new(decorator).build().fuse();
            let drain = slog_async::Async::new(drain).build().filter_level(level).fuse();
            slog::Logger::root(drain, o!())
        }
    };
    Ok(logger)
}

#[derive(Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: &str = "x-request-id";

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// Middleware: request id in and out, one log line per request.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let request_bytes = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let hub = crate::error_tracking::request_hub(&id, &method, &path);
    let mut response = match &hub {
        Some(hub) => {
            use sentry::SentryFutureExt;
            next.call(req).bind_hub(hub.clone()).await?
        }
        None => next.call(req).await?,
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static(REQUEST_ID), value);
    }
    if let Some(state) = state {
        let status = response.status().as_u16();
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        let elapsed = started.elapsed().as_secs_f64();
        state.metrics.http_requests.with_label_values(&[route.as_str(), method.as_str(), &status.to_string()]).inc();
        state.metrics.http_duration.with_label_values(&[route.as_str(), method.as_str()]).observe(elapsed);
        let log = &state.log;
        let latency_ms = elapsed * 1000.0;
        let error = response.response().error().map(|e| format!("{e:?}"));
        if let (Some(hub), true) = (&hub, status >= 500) {
            crate::error_tracking::report_server_error(hub, &route, status, error.as_deref());
        }
        let request = response.request();
        let subject = request.extensions().get::<crate::auth::Caller>().map(|caller| caller.subject.clone());
        let upload_id = request.match_info().get("id").map(str::to_owned);
        // A server error goes out at WARN, with its cause, so that a node logging at `warn`
        // still says why it answered 5xx (the client only sees "retry"). Two calls, as slog
        // takes a record's level as a constant.
        macro_rules! request_line {
            ($level:ident) => {
                // The path, never the query: signed download URLs carry their signature there.
                slog::$level!(log, "request";
                    "request_id" => &id, "method" => method, "path" => path, "route" => route,
                    "status" => status, "latency_ms" => latency_ms, "request_bytes" => request_bytes,
                    "subject" => subject, "upload_id" => upload_id, "error" => error)
            };
        }
        if status >= 500 {
            request_line!(warn);
        } else {
            request_line!(info);
        }
    }
    Ok(response)
}
