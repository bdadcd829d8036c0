//! The status server of both binaries (`tinykv-scheduler` and `tinykv-server`, flag
//! `--status-addr HOST:PORT`): an HTTP/1 server whose `GET /metrics` (or HEAD) answers the
//! metrics of the registries it is given in the Prometheus text format; any other request gets
//! 404. See docs/METRICS.md.

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use slog::{warn, Logger};
use tokio::net::TcpListener;

/// Why the status server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The address is not `HOST:PORT`.
    #[error("--status-addr {0:?} is not HOST:PORT (e.g. 127.0.0.1:20180)")]
    BadAddr(String),
    /// The address could not be bound.
    #[error("cannot serve status on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Checks a status address: `HOST:PORT`, a non-empty host without '/', a port number.
pub fn parse_status_addr(text: &str) -> Result<String, StatusError> {
    let t = text.trim();
    let ok = t
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && !h.contains('/') && p.parse::<u16>().is_ok());
    if ok {
        Ok(t.to_string())
    } else {
        Err(StatusError::BadAddr(text.to_string()))
    }
}

/// Binds the status address (at start-up, so that a busy one fails the start).
pub async fn bind(addr: &str) -> Result<TcpListener, StatusError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StatusError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// The metrics of `registries` in the Prometheus text format.
pub fn render(registries: &[Registry]) -> Result<String, prometheus::Error> {
    let families: Vec<_> = registries.iter().flat_map(Registry::gather).collect();
    TextEncoder::new().encode_to_string(&families)
}

/// Serves `GET /metrics` with the metrics of `registries` on `listener` until the task running
/// it is dropped (with its runtime) or an accept error ends it.
pub async fn serve(listener: TcpListener, registries: Vec<Registry>) -> std::io::Result<()> {
    let registries: Arc<[Registry]> = registries.into();
    let app = Router::new()
        .route(
            "/metrics",
            axum::routing::any(move |method: Method| {
                let registries = registries.clone();
                async move { metrics(&method, &registries) }
            }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND });
    axum::serve(listener, app).await
}

/// Runs [`serve`] as a task of the current runtime; an error that ends it is logged.
pub fn spawn(
    listener: TcpListener,
    registries: Vec<Registry>,
    logger: Logger,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = serve(listener, registries).await {
            warn!(logger, "the status server stopped"; "err" => %e);
        }
    })
}

fn metrics(method: &Method, registries: &[Registry]) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::NOT_FOUND.into_response();
    }
    match render(registries) {
        Ok(text) => (
            [(header::CONTENT_TYPE, TextEncoder::new().format_type())],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_status_addr_must_be_host_port() {
        assert_eq!(
            parse_status_addr("127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000"
        );
        assert!(parse_status_addr("localhost:0").is_ok());
        assert!(parse_status_addr("[::1]:80").is_ok());
        for bad in [
            "",
            "127.0.0.1",
            ":80",
            "h:",
            "h:99999",
            "h:port",
            "http://h:1",
        ] {
            let e = parse_status_addr(bad).unwrap_err().to_string();
            assert!(e.contains("is not HOST:PORT"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn metrics_render_joins_the_registries() {
        let (a, b) = (Registry::new(), Registry::new());
        let c = prometheus::IntCounter::new("tinykv_test_a_total", "a").unwrap();
        c.inc_by(3);
        a.register(Box::new(c)).unwrap();
        let g = prometheus::IntGauge::new("tinykv_test_b", "b").unwrap();
        b.register(Box::new(g)).unwrap();
        let text = render(&[a, b]).unwrap();
        assert!(text.contains("tinykv_test_a_total 3"), "{text}");
        assert!(text.contains("# HELP tinykv_test_b b"), "{text}");
    }
}
