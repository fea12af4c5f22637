//! The smallest HTTP/1.1 server that Prometheus needs: `GET /metrics` answers the metrics in
//! the OpenMetrics text format when the client accepts it (Prometheus does), else in the
//! classic Prometheus text format; anything else 404. One request per connection.
//!
//! What a client can send is bounded: a request head of at most [`MAX_HEAD`] bytes (more gets
//! `431`), read within 10 seconds, and at most `--max-metrics-connections` connections at once
//! (more get `503` and are closed at once). Lines may end in CRLF or a bare LF. The request
//! handling ([`Incoming`], [`route`], [`reply`]) is pure, and fuzzed.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    limits::{Gate, Pass},
    metrics::Metrics,
};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";
/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
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

/// A request head as it arrives, in pieces.
#[derive(Debug, Default)]
pub struct Incoming {
    head: Vec<u8>,
}

impl Incoming {
    /// Adds bytes; the route once the head is complete (or too large).
    pub fn push(&mut self, bytes: &[u8]) -> Option<Route> {
        if self.head.len() >= MAX_HEAD {
            return Some(Route::TooLarge);
        }
        self.head.extend_from_slice(bytes);
        match head_end(&self.head) {
            Some(end) if end <= MAX_HEAD => Some(route(&self.head[..end])),
            Some(_) => Some(Route::TooLarge),
            None if self.head.len() >= MAX_HEAD => Some(Route::TooLarge),
            None => None,
        }
    }
}

/// Where the head ends: after the first empty line, CRLF or bare LF.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            let line = &bytes[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// What to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The metrics; `openmetrics` when the client accepts that format; `head` for HEAD.
    Metrics {
        openmetrics: bool,
        head: bool,
    },
    NotFound {
        head: bool,
    },
    MethodNotAllowed,
    BadRequest,
    TooLarge,
    /// Too many connections at once.
    Busy,
}

/// The route for a complete request head.
pub fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let mut words = first.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Route::BadRequest;
    };
    let path = target.split('?').next().unwrap_or("");
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path != "/metrics" {
        return Route::NotFound { head: head_only };
    }
    let openmetrics = lines.any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept")
                && value
                    .to_ascii_lowercase()
                    .contains("application/openmetrics-text")
        })
    });
    Route::Metrics {
        openmetrics,
        head: head_only,
    }
}

/// The whole reply for `route`; `body` renders the metrics (OpenMetrics when asked `true`).
pub fn reply(route: Route, body: &dyn Fn(bool) -> String) -> Vec<u8> {
    let (status, ctype, body, head) = match route {
        Route::Metrics { openmetrics, head } => (
            "200 OK",
            if openmetrics {
                CONTENT_TYPE
            } else {
                PROMETHEUS_TYPE
            },
            body(openmetrics),
            head,
        ),
        Route::NotFound { head } => (
            "404 Not Found",
            TEXT_TYPE,
            "enetstat serves its metrics at /metrics\n".to_owned(),
            head,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            TEXT_TYPE,
            "only GET\n".to_owned(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            TEXT_TYPE,
            "not an HTTP request\n".to_owned(),
            false,
        ),
        Route::TooLarge => (
            "431 Request Header Fields Too Large",
            TEXT_TYPE,
            format!("the request head is over {MAX_HEAD} bytes\n"),
            false,
        ),
        Route::Busy => (
            "503 Service Unavailable",
            TEXT_TYPE,
            "too many metrics connections at once (--max-metrics-connections)\n".to_owned(),
            false,
        ),
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let retry = if route == Route::Busy {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}{retry}\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(request: &[u8]) -> Option<Route> {
        Incoming::default().push(request)
    }

    #[test]
    fn crlf_and_bare_lf_requests_are_both_answered() {
        let om = Route::Metrics {
            openmetrics: false,
            head: false,
        };
        assert_eq!(whole(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some(om));
        assert_eq!(whole(b"GET /metrics HTTP/1.1\nHost: x\n\n"), Some(om));
        assert_eq!(
            whole(b"GET /metrics?x=1 HTTP/1.0\nAccept: application/openmetrics-text\n\n"),
            Some(Route::Metrics {
                openmetrics: true,
                head: false
            })
        );
        assert_eq!(whole(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            whole(b"HEAD / HTTP/1.1\n\n"),
            Some(Route::NotFound { head: true })
        );
        assert_eq!(
            whole(b"POST /metrics HTTP/1.1\n\n"),
            Some(Route::MethodNotAllowed)
        );
        assert_eq!(whole(b"\xff\xfe\n\n"), Some(Route::BadRequest));
    }

    #[test]
    fn a_head_split_anywhere_is_found() {
        let req = b"GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n";
        for cut in 0..req.len() {
            let mut inc = Incoming::default();
            let first = inc.push(&req[..cut]);
            let got = first.or_else(|| inc.push(&req[cut..]));
            assert!(
                matches!(got, Some(Route::Metrics { .. })),
                "cut at {cut}: {got:?}"
            );
        }
    }

    #[test]
    fn a_huge_head_gets_431() {
        let mut inc = Incoming::default();
        let mut got = inc.push(b"GET /metrics HTTP/1.1\r\n");
        let header = [b'a'; 2048];
        for _ in 0..10 {
            got = got.or_else(|| inc.push(&header));
        }
        assert_eq!(got, Some(Route::TooLarge));
        let r = String::from_utf8(reply(Route::TooLarge, &|_| String::new())).unwrap();
        assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn replies_carry_their_length() {
        let r = reply(
            Route::Metrics {
                openmetrics: true,
                head: false,
            },
            &|om| format!("om={om}\n"),
        );
        let r = String::from_utf8(r).unwrap();
        assert!(r.contains("Content-Length: 8\r\n") && r.ends_with("\r\n\r\nom=true\n"));
        let head = reply(
            Route::Metrics {
                openmetrics: false,
                head: true,
            },
            &|_| "abc".into(),
        );
        assert!(
            String::from_utf8(head)
                .unwrap()
                .ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n")
        );
    }
}
