//! Sentry: with `sentry.dsn` set, panics and 5xx answers are reported, each tagged with its
//! request id; without a DSN nothing is initialised and nothing is sent. Each request runs
//! with a hub of its own, so a panic inside it carries its tags.

use std::sync::Arc;

use sentry::protocol::{Event, Level};
use sentry::Hub;

use crate::config::SentrySettings;

/// Starts the client; keep the guard alive while the process serves (it flushes on drop).
pub fn init(settings: &SentrySettings, profile: &str) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    if settings.dsn.is_empty() {
        return Ok(None);
    }
    // Checked here so that a typo stops the start instead of silently sending nothing.
    let _: sentry::types::Dsn =
        settings.dsn.expose().parse().map_err(|e| anyhow::anyhow!("sentry.dsn is not a DSN: {e}"))?;
    let environment = if settings.environment.is_empty() { profile.to_owned() } else { settings.environment.clone() };
    let options = sentry::ClientOptions::new()
        .dsn(settings.dsn.expose())
        .maybe_release(sentry::release_name!())
        .environment(environment)
        .sample_rate(settings.sample_rate)
        // No request bodies, headers or user data: tokens and signed URLs stay here.
        .send_default_pii(false);
    let guard = sentry::init(options);
    Ok(Some(guard))
}

/// A hub for one request, tagged with its id, when a client is configured.
pub fn request_hub(request_id: &str, method: &str, path: &str) -> Option<Arc<Hub>> {
    let main = Hub::main();
    main.client()?;
    let hub = Arc::new(Hub::new_from_top(main));
    hub.configure_scope(|scope| {
        scope.set_tag("request_id", request_id);
        scope.set_tag("http.method", method);
        scope.set_transaction(Some(path));
    });
    Some(hub)
}

/// Reports a 5xx answer with its route and cause.
pub fn report_server_error(hub: &Hub, route: &str, status: u16, cause: Option<&str>) {
    let event = Event {
        level: Level::Error,
        message: Some(format!("{route} answered {status}")),
        tags: [("route".to_owned(), route.to_owned()), ("status".to_owned(), status.to_string())].into(),
        extra: cause.map(|c| [("cause".to_owned(), c.into())].into()).unwrap_or_default(),
        ..Default::default()
    };
    hub.capture_event(event);
}
