use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use actix_web_httpauth::extractors::bearer::BearerAuth;

use super::Role;
use crate::db::models::UploadRow;
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Someone else's upload is reported as missing, so ids cannot be probed.
    pub fn check_owner(&self, row: &UploadRow) -> Result<(), ApiError> {
        if self.is_admin() || row.owner == self.subject {
            Ok(())
        } else {
            Err(ApiError::NotFound)
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The rate limiter has verified the token already when it is on.
        if let Some(caller) = req.extensions().get::<Caller>() {
            return ready(Ok(caller.clone()));
        }
        let caller = (|| {
            let state =
                req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::Internal("no app state".into()))?;
            let bearer = BearerAuth::from_request(req, payload).into_inner().map_err(|_| ApiError::Unauthorized)?;
            let claims = state.keys.verify(bearer.token()).ok_or(ApiError::Unauthorized)?;
            let caller = Caller { subject: claims.sub, role: claims.role };
            // For the request log line.
            req.extensions_mut().insert(caller.clone());
            Ok(caller)
        })();
        ready(caller)
    }
}
