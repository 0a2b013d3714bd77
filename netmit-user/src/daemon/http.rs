//! The daemon's HTTP server: `/metrics`, `/healthz` and `/status`, all answered from
//! what the last tick published (no handler makes a system call).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};

use crate::metrics::{ErrorKind, Exposition, Metrics, SharedSnapshot};

/// What the handlers read.
pub(crate) struct AppState {
    pub exposition: Exposition,
    pub metrics: Metrics,
    pub snapshot: SharedSnapshot,
    pub started: Instant,
    pub started_at_unix: f64,
    pub config: String,
}

/// Longest time since the last tick for `/healthz` to answer 200: three intervals and a
/// second of slack (a tick that applies settings takes a few milliseconds).
pub(crate) fn healthy_within(interval_secs: f64) -> Duration {
    Duration::from_secs_f64(interval_secs * 3.0 + 1.0)
}

async fn metrics(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) = app.exposition.encode(Exposition::wants_openmetrics(accept));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    let snap = app.snapshot.read().unwrap_or_else(|p| p.into_inner());
    match snap.taken_at {
        Some(t) if t.elapsed() <= healthy_within(snap.interval_secs) => {
            (StatusCode::OK, "ok\n").into_response()
        }
        Some(t) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the last tick was {:.1} s ago\n", t.elapsed().as_secs_f64()),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no tick yet\n").into_response(),
    }
}

async fn status(State(app): State<Arc<AppState>>) -> Response {
    let snap = app
        .snapshot
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Healthy: ticking, and the last tick of every interface went through (a device that
    // could not be attached or tuned is a problem to see, not a reason to stop: /healthz,
    // the liveness check, stays 200 while the daemon ticks).
    let ticking = snap
        .taken_at
        .is_some_and(|t| t.elapsed() <= healthy_within(snap.interval_secs));
    let problems: Vec<String> = snap
        .interfaces
        .iter()
        .filter_map(|i| i.last_error.as_ref().map(|e| format!("{}: {e}", i.device)))
        .collect();
    let healthy = ticking && problems.is_empty();
    let errors: serde_json::Map<String, serde_json::Value> = ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), json!(app.metrics.errors(*k))))
        .collect();
    Json(json!({
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "config": app.config,
        "started_at_unix": app.started_at_unix,
        "uptime_secs": app.started.elapsed().as_secs_f64(),
        "healthy": healthy,
        "problems": problems,
        "ticks": snap.ticks,
        "last_tick_unix": snap.taken_at_unix,
        "interval_secs": snap.interval_secs,
        "napi_poll_source": snap.napi_poll_source,
        "dry_run": snap.dry_run,
        "errors": errors,
        "interfaces": snap.interfaces,
        "preload": snap.preload,
    }))
    .into_response()
}

/// The router (also used by tests without a socket).
pub(crate) fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(app)
}

/// Serves until `shutdown` turns true, then finishes the requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
