//! The HTTP side of `--metrics`: `/metrics` (Prometheus text), `/healthz`
//! and `/topics`, served by axum (hyper) on the broker's own runtime, so
//! no thread or runtime is added for it and a scrape sees the broker as it
//! is. It is off unless asked for, and has no authentication: it names
//! every topic, so it belongs on a loopback address.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use actix::Addr;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::future::join_all;
use futures_util::FutureExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

use crate::config::DEFAULT_TOPICS_LIMIT;
use crate::memory::Memory;
use crate::registry::{ListTopics, Registry};
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::topic::{Summarize, TopicSummary};

/// The Prometheus text format's media type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bound metrics address and the installed recorder, made before the
/// broker starts so that every series is registered with the recorder.
pub struct Exporter {
    listener: std::net::TcpListener,
    prometheus: PrometheusHandle,
}

impl Exporter {
    /// Binds `addr` (`HOST:PORT`; the first address of a host name that
    /// can be bound) and installs the process's Prometheus recorder. Needs
    /// no runtime, so a bad address fails before anything starts.
    pub fn bind(addr: &str) -> Result<Exporter, String> {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve --metrics {addr}: {error}"))?;
        let mut failure = format!("cannot listen on --metrics {addr}: the name has no address");
        let mut bound = None;
        for candidate in addrs {
            match std::net::TcpListener::bind(candidate) {
                Ok(listener) => {
                    bound = Some(listener);
                    break;
                }
                Err(error) => failure = format!("cannot listen on --metrics {candidate}: {error}"),
            }
        }
        let listener = bound.ok_or(failure)?;
        listener
            .set_nonblocking(true)
            .map_err(|error| format!("cannot set up --metrics {addr}: {error}"))?;
        let prometheus = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
        Ok(Exporter {
            listener,
            prometheus,
        })
    }

    /// Where it listens (the port is known even when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the endpoints until the System stops. Must run inside it.
    pub fn serve(self, observed: Observed) -> io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let state = Endpoints {
            observed: Arc::new(observed),
            prometheus: self.prometheus,
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/topics", get(topics))
            .with_state(state);
        actix::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the metrics endpoint stopped");
            }
        });
        Ok(())
    }
}

/// The parts of a running broker the endpoints look at.
pub struct Observed {
    pub(crate) registry: Addr<Registry>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) memory: Arc<Memory>,
    pub(crate) shutdown: Shutdown,
}

#[derive(Clone)]
struct Endpoints {
    observed: Arc<Observed>,
    prometheus: PrometheusHandle,
}

/// Every series in the Prometheus text format, the states read just now.
async fn metrics(State(endpoints): State<Endpoints>) -> Response {
    let observed = &endpoints.observed;
    super::get().observe(&observed.stats, &observed.memory);
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        endpoints.prometheus.render(),
    )
        .into_response()
}

/// 200 while the broker accepts connections, 503 once it drains for
/// shutdown, so a load balancer stops sending clients before it closes.
async fn healthz(State(endpoints): State<Endpoints>) -> Response {
    if endpoints
        .observed
        .shutdown
        .draining()
        .now_or_never()
        .is_some()
    {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        )
    } else {
        json_response(StatusCode::OK, &json!({"status": "accepting"}))
    }
}

/// The largest topics (by cached bytes, then name), `limit` of them
/// ([`DEFAULT_TOPICS_LIMIT`] by default), each asked of its own actor, with
/// how many topics there are in all: per-topic detail that would be too
/// many series for Prometheus.
async fn topics(
    State(endpoints): State<Endpoints>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let limit = match query.get("limit").map(|limit| limit.parse::<usize>()) {
        None => DEFAULT_TOPICS_LIMIT,
        Some(Ok(limit)) => limit,
        Some(Err(_)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "limit must be a whole number"}),
            )
        }
    };
    let Ok(topics) = endpoints.observed.registry.send(ListTopics).await else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "the broker is stopping"}),
        );
    };
    let answers = join_all(topics.iter().map(|(_, topic)| topic.send(Summarize))).await;
    let mut summaries: Vec<TopicSummary> = answers.into_iter().filter_map(Result::ok).collect();
    let count = summaries.len();
    summaries.sort_by(|a, b| {
        b.cached_bytes
            .cmp(&a.cached_bytes)
            .then_with(|| a.name.cmp(&b.name))
    });
    let largest: Vec<Value> = summaries
        .iter()
        .take(limit)
        .map(|topic| {
            json!({
                "name": &*topic.name,
                "next_index": topic.next_index,
                "cached": topic.cached,
                "cached_bytes": topic.cached_bytes,
                "subscribers": topic.subscribers,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"count": count, "topics": largest}))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
