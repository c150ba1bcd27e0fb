//! The rate limiter in front of every route but the probes and `/metrics`: one request
//! token per request, and request bodies paced to the byte rate. The key is the token's
//! subject, or the client IP when there is no valid token. A token verified here is left
//! in the request for the `Caller` extractor, so it is verified once.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use futures_util::StreamExt;

use crate::auth::Caller;
use crate::error::{rate_limit_headers, ApiError};
use crate::limits::{Decision, KeyedBuckets, Standing};
use crate::state::AppState;

pub async fn rate_limit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let limits = &state.limits;
    let exempt = req.path().starts_with("/health/") || req.path() == "/metrics";
    if exempt || (limits.requests.is_none() && limits.body_bytes.is_none()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let caller = bearer_token(&req).and_then(|token| state.keys.verify(token));
    let key = match &caller {
        Some(claims) => format!("sub:{}", claims.sub),
        None => format!("ip:{}", req.peer_addr().map(|addr| addr.ip().to_string()).unwrap_or_default()),
    };
    if let Some(claims) = caller {
        req.extensions_mut().insert(Caller { subject: claims.sub, role: claims.role });
    }

    let mut standing = None;
    if let Some(requests) = &limits.requests {
        match requests.take_one(&key) {
            Decision::Allowed(now) => standing = Some(now),
            Decision::Denied { standing, retry_after } => {
                state.metrics.rate_limited.with_label_values(&["requests"]).inc();
                let error = too_many("rate_limited", "too many requests; slow down", standing, retry_after);
                return Ok(req.error_response(error).map_into_right_body());
            }
        }
    }
    if let Some(bytes) = &limits.body_bytes {
        if has_body(&req) {
            if let Decision::Denied { standing, retry_after } = bytes.check_room(&key) {
                state.metrics.rate_limited.with_label_values(&["body_bytes"]).inc();
                let error =
                    too_many("rate_limited", "request body byte rate exceeded; slow down", standing, retry_after);
                return Ok(req.error_response(error).map_into_right_body());
            }
            let payload = req.take_payload();
            req.set_payload(paced(payload, bytes.clone(), key));
        }
    }

    let mut response = next.call(req).await?;
    if let Some(standing) = standing {
        let headers = response.headers_mut();
        for (name, value) in rate_limit_headers(standing.limit, standing.remaining, standing.reset) {
            headers.insert(name, HeaderValue::from(value));
        }
    }
    Ok(response.map_into_left_body())
}

fn too_many(code: &'static str, message: &str, standing: Standing, retry_after: std::time::Duration) -> ApiError {
    ApiError::TooManyRequests {
        code,
        message: message.to_owned(),
        limit: standing.limit,
        remaining: standing.remaining,
        reset: standing.reset,
        retry_after,
    }
}

fn bearer_token(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0))
}

/// The body, each chunk released once the subject's byte bucket has paid for it. While
/// a chunk waits, nothing more is read, so TCP flow control slows the client down.
fn paced(payload: Payload, bytes: Arc<KeyedBuckets>, key: String) -> Payload {
    let stream = futures_util::stream::unfold((payload, bytes, key), |(mut payload, bytes, key)| async move {
        let item = payload.next().await?;
        if let Ok(chunk) = &item {
            let wait = bytes.take_paced(&key, chunk.len() as u64);
            if !wait.is_zero() {
                actix_rt::time::sleep(wait).await;
            }
        }
        Some((item, (payload, bytes, key)))
    });
    Payload::Stream { payload: Box::pin(stream) }
}
