//! What the monitor answers: one request in, one response out, no I/O.
//!
//! `GET` and `HEAD` work on every path (hyper leaves the body out of a `HEAD` answer but keeps its
//! `Content-Length`); any other method gets 405 with `Allow`, an unknown path 404. Every response
//! says `Connection: close` (one request per connection keeps the connection bound simple, see the
//! module above) and `Cache-Control: no-store` (probes and scrapers must see the present).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::status::StatusBoard;

/// The body of every monitor response: complete before the head is written.
pub(super) type Body = Full<Bytes>;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// What `Allow` lists on a 405.
const ALLOWED_METHODS: &str = "GET, HEAD";

/// The answer to `request`; its body is never read.
pub(super) fn respond<B>(
    request: &Request<B>,
    metrics: &Metrics,
    board: &StatusBoard,
) -> Response<Body> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            // Readiness is read from the board at the scrape, so /metrics and /readyz agree (and
            // a pipeline that a reload removed loses its series).
            metrics.pipeline_ready.reset();
            for status in board.snapshot() {
                metrics
                    .pipeline_ready
                    .with_label_values(&[&status.name])
                    .set(i64::from(status.state.is_ready()));
            }
            build(StatusCode::OK, prometheus::TEXT_FORMAT, metrics.encode())
        }
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => readyz(board),
        "/status" => json(StatusCode::OK, &board.to_json()),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn readyz(board: &StatusBoard) -> Response<Body> {
    match board.readiness() {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "ready": true })),
        Err(not_ready) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "ready": false, "not_ready": not_ready }),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    build(status, TEXT, format!("{body}\n"))
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    build(status, JSON, text)
}

fn build(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn answer(method: Method, target: &str) -> Response<Body> {
        let request = Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .unwrap();
        respond(&request, &Metrics::new(), &StatusBoard::new("routes"))
    }

    async fn body_of(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn paths_and_methods() {
        for (method, target, status, content_type) in [
            (Method::GET, "/healthz", 200, TEXT),
            (Method::HEAD, "/healthz", 200, TEXT),
            (Method::GET, "/healthz?verbose=1", 200, TEXT),
            (Method::GET, "/readyz", 200, JSON),
            (Method::HEAD, "/status", 200, JSON),
            (Method::GET, "/metrics", 200, prometheus::TEXT_FORMAT),
            (Method::GET, "/nope", 404, TEXT),
            (Method::HEAD, "/nope", 404, TEXT),
            (Method::POST, "/metrics", 405, TEXT),
            (Method::DELETE, "/nope", 405, TEXT),
        ] {
            let response = answer(method.clone(), target);
            assert_eq!(response.status().as_u16(), status, "{method} {target}");
            let headers = response.headers();
            assert_eq!(headers[CONTENT_TYPE], content_type, "{method} {target}");
            assert_eq!(headers[CONNECTION], "close");
            assert_eq!(headers[CACHE_CONTROL], "no-store");
            assert_eq!(
                headers.get(ALLOW).map(|v| v.to_str().unwrap()),
                (status == 405).then_some(ALLOWED_METHODS),
                "{method} {target}"
            );
        }
        assert_eq!(body_of(answer(Method::GET, "/healthz")).await, "ok\n");
        assert_eq!(
            body_of(answer(Method::PUT, "/healthz")).await,
            "only GET and HEAD are supported\n"
        );
    }
}
