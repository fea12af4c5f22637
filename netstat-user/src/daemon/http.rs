//! The smallest HTTP/1.1 server that Prometheus needs: `GET /metrics` answers the metrics in
//! the OpenMetrics text format when the client accepts it (Prometheus does), else in the
//! classic Prometheus text format; anything else 404. One request per connection.
//!
//! What a client can send is bounded: a request head of at most [`MAX_HEAD`] bytes (more gets
//! `431`), read within 10 seconds, and at most `--max-metrics-connections` connections at once
//! (more get `503` and are closed at once). Lines may end in CRLF or a bare LF. The request
//! handling ([`Incoming`], [`route`], [`reply`]) is pure, in [`netstat_core::http`], and
//! fuzzed; this file holds the sockets.

use std::{sync::Arc, time::Duration};

pub use netstat_core::http::{Incoming, MAX_HEAD, Route, reply, route};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    limits::{Gate, Pass},
    metrics::Metrics,
};

/// Longest time a client may take to send its request and take the reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until the listener is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, gate: Arc<Gate>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Some(pass) = gate.enter() else {
                    // Never wait for a refused client: what does not fit is lost.
                    let _ = stream.try_write(&reply(Route::Busy, &|_| String::new()));
                    continue;
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let answered = tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &metrics));
                    if let Ok(Err(e)) = answered.await {
                        tracing::debug!("metrics client: {e}");
                    }
                    drop::<Pass>(pass);
                });
            }
            Err(e) => {
                tracing::warn!("cannot accept a metrics client: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut incoming = Incoming::default();
    let mut buf = [0u8; 2048];
    let route = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if let Some(route) = incoming.push(&buf[..n]) {
            break route;
        }
    };
    let body = |openmetrics: bool| {
        let text = metrics.encode();
        if openmetrics {
            text
        } else {
            super::metrics::to_prometheus_text(&text)
        }
    };
    stream.write_all(&reply(route, &body)).await?;
    stream.shutdown().await
}
