//! The request pipeline in-process (no socket): layers and timeouts per method, body
//! limits wherever a body is read, JSON bodies of bare error statuses, `Option`
//! extractors, and path types that do not fit their route.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::Captured;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, StreamBody};
use nucleon_http::{
    Body, FromRequestParts, HttpConfig, HttpError, HttpService, OptionalFromRequestParts, Path,
    Query, Request, RequestContext, Router, get, post,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing_subscriber::layer::SubscriberExt;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn service(router: &Router, configure: impl FnOnce(&mut HttpConfig)) -> HttpService {
    let mut config = HttpConfig::default();
    configure(&mut config);
    HttpService::new(router, &config, None)
}

async fn send(service: &HttpService, method: &str, path: &str, body: Body) -> Reply {
    let mut request = Request::new(body);
    *request.method_mut() = method.parse().expect("a method");
    *request.uri_mut() = path.parse().expect("a path");
    let remote: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
    let response = service.call(request, remote).await;
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("a response body").to_bytes(),
    }
}

/// A body of `chunks` chunks of 8 bytes, of unknown length (as a chunked upload).
fn streamed(chunks: usize) -> Body {
    let frames = (0..chunks).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b"12345678")))
    });
    Body::new(StreamBody::new(futures_util::stream::iter(frames)))
}

fn mark(name: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static(name),
        HeaderValue::from_static("yes"),
    )
}

async fn fast() -> &'static str {
    "fast"
}

async fn pause() -> &'static str {
    tokio::time::sleep(Duration::from_millis(200)).await;
    "done"
}

async fn stuck() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "never"
}

#[tokio::test]
async fn layers_and_timeouts_stay_with_the_methods_they_were_given_to() {
    let router = Router::new()
        // A layer on GET, then POST on the same path: POST is not wrapped.
        .route("/a", get(fast).layer(mark("x-get")))
        .route("/a", post(fast))
        // The reverse.
        .route("/b", get(fast))
        .route("/b", post(fast).layer(mark("x-post")))
        // In one method router, a layer wraps the handlers added before it only.
        .route("/c", get(fast).layer(mark("x-get")).post(fast))
        // A timeout on GET only.
        .route("/t", get(stuck).timeout(Duration::from_millis(50)))
        .route("/t", post(pause))
        .route("/u", get(pause))
        .route("/u", post(stuck).timeout(Duration::from_millis(50)));
    let service = service(&router, |_| {});

    let reply = send(&service, "GET", "/a", Body::empty()).await;
    assert_eq!(
        reply.headers.get("x-get").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
    let reply = send(&service, "POST", "/a", Body::empty()).await;
    assert_eq!(reply.text(), "fast");
    assert!(
        reply.headers.get("x-get").is_none(),
        "GET's layer wrapped POST"
    );

    let reply = send(&service, "GET", "/b", Body::empty()).await;
    assert!(
        reply.headers.get("x-post").is_none(),
        "POST's layer wrapped GET"
    );
    let reply = send(&service, "POST", "/b", Body::empty()).await;
    assert!(reply.headers.get("x-post").is_some());

    let reply = send(&service, "GET", "/c", Body::empty()).await;
    assert!(reply.headers.get("x-get").is_some());
    let reply = send(&service, "POST", "/c", Body::empty()).await;
    assert!(
        reply.headers.get("x-get").is_none(),
        "added after the layer"
    );

    let reply = send(&service, "GET", "/t", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["error"], "TIMEOUT");
    assert_eq!(reply.headers["retry-after"], "1");
    let reply = send(&service, "POST", "/t", Body::empty()).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "GET's timeout applied to POST"
    );
    assert_eq!(reply.text(), "done");

    let reply = send(&service, "GET", "/u", Body::empty()).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "POST's timeout applied to GET"
    );
    let reply = send(&service, "POST", "/u", Body::empty()).await;
    assert_eq!(reply.json()["error"], "TIMEOUT");
}

#[tokio::test]
async fn a_handler_timeout_answers_with_the_configured_retry_after() {
    let router = Router::new().route("/t", get(stuck).timeout(Duration::from_millis(20)));
    let service = service(&router, |c| c.retry_after = 7);
    let reply = send(&service, "GET", "/t", Body::empty()).await;
    assert_eq!(reply.json()["error"], "TIMEOUT");
    assert_eq!(reply.headers["retry-after"], "7");
}

/// What a handler or service could read of a body: `read N` or the error.
async fn drain(body: Body) -> String {
    match body.collect().await {
        Ok(collected) => format!("read {}", collected.to_bytes().len()),
        Err(error) if error.is::<LengthLimitError>() => "limit".to_owned(),
        Err(error) => format!("error: {error}"),
    }
}

#[tokio::test]
async fn every_body_the_framework_hands_out_is_capped_at_the_body_limit() {
    let legacy = tower::service_fn(|request: Request| async move {
        let text = drain(request.into_body()).await;
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(text)))
    });
    let router = Router::new()
        .route(
            "/request",
            post(|request: Request| drain(request.into_body())),
        )
        .route("/body", post(drain))
        .route(
            "/bytes",
            post(|bytes: Bytes| async move { bytes.len().to_string() }),
        )
        .route(
            "/layered",
            post(|request: Request| drain(request.into_body())).layer(mark("x-layer")),
        )
        .mount("/legacy", legacy)
        .route("/ignores", post(fast));
    let service = service(&router, |c| c.body_limit = 32);

    // A route that never reads its body answers a declared length past the limit as
    // one that reads it does.
    let reply = send(&service, "POST", "/ignores", Body::from(vec![b'x'; 33])).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "PAYLOAD_TOO_LARGE");
    let reply = send(&service, "POST", "/ignores", Body::from(vec![b'x'; 32])).await;
    assert_eq!(reply.text(), "fast");

    for path in ["/request", "/body", "/legacy/x", "/layered"] {
        // Within the limit: read whole.
        let reply = send(&service, "POST", path, streamed(4)).await;
        assert_eq!(reply.text(), "read 32", "{path}");
        let reply = send(&service, "POST", path, Body::from(vec![b'x'; 32])).await;
        assert_eq!(reply.text(), "read 32", "{path}");
        // Of unknown length: reading stops at the limit.
        let reply = send(&service, "POST", path, streamed(5)).await;
        assert_eq!(reply.text(), "limit", "{path}");
        // Of a known length past the limit: 413 before the handler or service runs.
        let reply = send(&service, "POST", path, Body::from(vec![b'x'; 33])).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_eq!(reply.json()["error"], "PAYLOAD_TOO_LARGE", "{path}");
    }
    let reply = send(&service, "POST", "/bytes", streamed(5)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "PAYLOAD_TOO_LARGE");
    assert_eq!(
        send(&service, "POST", "/bytes", streamed(4)).await.text(),
        "32"
    );
}

#[tokio::test]
async fn collect_bytes_takes_a_limit() {
    let error = streamed(5).collect_bytes(39).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error.code(), "PAYLOAD_TOO_LARGE");
    assert_eq!(streamed(5).collect_bytes(40).await.unwrap().len(), 40);
    let error = Body::from(vec![0; 10]).collect_bytes(9).await.unwrap_err();
    assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_bare_error_status_has_the_standard_json_body() {
    let router = Router::new()
        .route("/conflict", get(|| async { StatusCode::CONFLICT }))
        .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
        .route("/bug", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route(
            "/missing",
            get(|| async { Err::<String, _>(StatusCode::NOT_FOUND) }),
        )
        .route("/created", get(|| async { StatusCode::CREATED }))
        .route("/moved", get(|| async { StatusCode::NOT_MODIFIED }));
    let service = service(&router, |_| {});

    let reply = send(&service, "GET", "/conflict", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "CONFLICT", "message": "Conflict"})
    );
    let reply = send(&service, "GET", "/teapot", Body::empty()).await;
    assert_eq!(reply.json()["error"], "I_M_A_TEAPOT");
    let reply = send(&service, "GET", "/missing", Body::empty()).await;
    assert_eq!(
        reply.json(),
        serde_json::json!({"error": "NOT_FOUND", "message": "Not Found"})
    );
    let reply = send(&service, "GET", "/bug", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["error"], "INTERNAL_ERROR");

    for path in ["/created", "/moved"] {
        let reply = send(&service, "GET", path, Body::empty()).await;
        assert!(reply.body.is_empty(), "{path}: {}", reply.text());
        assert!(reply.headers.get("content-type").is_none(), "{path}");
    }
}

#[derive(serde::Deserialize)]
struct Paging {
    page: u32,
}

/// An optional header: absent is `None`, present but not a number is a 400.
struct Tenant(u32);

impl FromRequestParts for Tenant {
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        match <Self as OptionalFromRequestParts>::from_request_parts(parts, ctx).await? {
            Some(tenant) => Ok(tenant),
            None => Err(HttpError::bad_request("x-tenant is required")),
        }
    }
}

impl OptionalFromRequestParts for Tenant {
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _ctx: &RequestContext,
    ) -> Result<Option<Self>, HttpError> {
        let Some(value) = parts.headers.get("x-tenant") else {
            return Ok(None);
        };
        let tenant = value
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HttpError::invalid_parameters([("x-tenant", "not a number")]))?;
        Ok(Some(Tenant(tenant)))
    }
}

#[tokio::test]
async fn option_extractors_are_none_only_when_absent() {
    let router = Router::new()
        .route(
            "/list",
            get(|paging: Option<Query<Paging>>| async move {
                paging.map_or(1, |Query(p)| p.page).to_string()
            }),
        )
        .route(
            "/items/{id}",
            get(|id: Option<Path<u32>>| async move { format!("{:?}", id.map(|Path(id)| id)) }),
        )
        .route(
            "/all",
            get(|id: Option<Path<u32>>| async move { format!("{:?}", id.map(|Path(id)| id)) }),
        )
        .route(
            "/tenant",
            get(|tenant: Option<Tenant>| async move { format!("{:?}", tenant.map(|Tenant(t)| t)) }),
        );
    let service = service(&router, |_| {});

    assert_eq!(
        send(&service, "GET", "/list", Body::empty()).await.text(),
        "1"
    );
    assert_eq!(
        send(&service, "GET", "/list?page=3", Body::empty())
            .await
            .text(),
        "3"
    );
    let reply = send(&service, "GET", "/list?page=three", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json()["error"], "INVALID_PARAMETERS");

    assert_eq!(
        send(&service, "GET", "/items/7", Body::empty())
            .await
            .text(),
        "Some(7)"
    );
    let reply = send(&service, "GET", "/items/seven", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(
        send(&service, "GET", "/all", Body::empty()).await.text(),
        "None"
    );

    assert_eq!(
        send(&service, "GET", "/tenant", Body::empty()).await.text(),
        "None"
    );
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = "/tenant".parse().unwrap();
    request
        .headers_mut()
        .insert("x-tenant", HeaderValue::from_static("acme"));
    let response = service.call(request, "127.0.0.1:1".parse().unwrap()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_path_type_that_does_not_fit_the_route_is_a_500_with_a_log_line() {
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    #[derive(serde::Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct Page {
        country: String,
        page: u32,
    }
    let router = Router::new()
        .route(
            "/pair/{id}",
            get(|Path((a, b)): Path<(u32, u32)>| async move { format!("{a} {b}") }),
        )
        .route(
            "/page/{country}",
            get(|Path(p): Path<Page>| async move { p.page.to_string() }),
        )
        .route(
            "/one/{id}",
            get(|Path(id): Path<u32>| async move { id.to_string() }),
        );
    let service = service(&router, |_| {});

    let reply = send(&service, "GET", "/pair/1", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["error"], "INTERNAL_ERROR");
    assert!(!reply.text().contains("u32"), "no internals to the client");
    let reply = send(&service, "GET", "/page/gb", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    // A value that does not parse is still the client's error.
    let reply = send(&service, "GET", "/one/x", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json()["messages"]["id"],
        "`x` is not a non-negative integer"
    );

    let errors: Vec<String> = captured
        .events("nucleon::http")
        .into_iter()
        .filter(|e| e.level == tracing::Level::ERROR)
        .map(|e| e.fields["message"].clone())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].contains(
            "Path<(u32, u32)> does not fit the parameters of route `GET /pair/{id}` (id)"
        ),
        "{errors:#?}"
    );
    assert!(
        errors[1].contains("`GET /page/{country}` (country)") && errors[1].contains("`page`"),
        "{errors:#?}"
    );
}

/// The context travels beside the request to handlers; whatever is handed the request
/// itself (a mounted service, a layer, a handler's `Request` argument) finds it in the
/// request's extensions.
#[tokio::test]
async fn the_request_context_reaches_extractors_layers_and_mounted_services() {
    fn described(request: &Request) -> String {
        let ctx = request
            .extensions()
            .get::<RequestContext>()
            .expect("a RequestContext in the extensions");
        format!(
            "{} {} {}",
            ctx.route().unwrap_or("-"),
            ctx.params()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            ctx.remote_addr()
        )
    }
    let mounted = tower::service_fn(|request: Request| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(described(&request))))
    });
    let router = Router::new()
        .route(
            "/ctx/{id}",
            get(|ctx: RequestContext, Path(id): Path<u32>| async move {
                format!("{} {id} {}", ctx.route().unwrap_or("-"), ctx.remote_addr())
            }),
        )
        .route(
            "/whole/{id}",
            get(|request: Request| async move { described(&request) }),
        )
        .route(
            "/layered/{id}",
            get(|Path(id): Path<u32>| async move { id.to_string() }).layer(
                SetResponseHeaderLayer::overriding(
                    HeaderName::from_static("x-layer"),
                    HeaderValue::from_static("1"),
                ),
            ),
        )
        .mount("/mounted", mounted);
    let plain = service(&router, |_| {});
    let layered_app = router.clone().layer(SetResponseHeaderLayer::overriding(
        HeaderName::from_static("x-app"),
        HeaderValue::from_static("1"),
    ));
    let layered = service(&layered_app, |_| {});
    for service in [&plain, &layered] {
        let reply = send(service, "GET", "/ctx/7", Body::empty()).await;
        assert_eq!(reply.text(), "GET /ctx/{id} 7 127.0.0.1:4000");
        let reply = send(service, "GET", "/whole/8", Body::empty()).await;
        assert_eq!(reply.text(), "GET /whole/{id} id=8 127.0.0.1:4000");
        let reply = send(service, "GET", "/layered/9", Body::empty()).await;
        assert_eq!(reply.text(), "9");
        assert_eq!(reply.headers["x-layer"], "1");
        let reply = send(service, "GET", "/mounted/x", Body::empty()).await;
        assert_eq!(reply.text(), "MOUNT /mounted/*  127.0.0.1:4000");
    }
}

/// Routes of one shape told apart by their constraints, on any of their parameters:
/// each request reaches the route whose constraints all hold, with every parameter
/// (percent-decoded before it is checked); none holding is a 404. (matchit takes one
/// name per position: the routes name their parameters alike.)
#[tokio::test]
async fn routes_of_one_shape_are_told_apart_by_their_constraints() {
    async fn by_number(Path((kind, id)): Path<(String, u64)>) -> String {
        format!("{kind} number {id}")
    }
    async fn by_name(Path((kind, name)): Path<(String, String)>) -> String {
        format!("{kind} named {name}")
    }
    let router = Router::new()
        .route("/{kind}/{id:[0-9]+}", get(by_number))
        .route("/{kind}/{id:[a-z ]+}", get(by_name))
        .route("/only/{code:[a-z]{2}}/{n:[0-9]}", get(|| async { "only" }));
    let service = service(&router, |_| {});
    let ok = |reply: Reply| {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.text()
    };
    assert_eq!(
        ok(send(&service, "GET", "/users/42", Body::empty()).await),
        "users number 42"
    );
    assert_eq!(
        ok(send(&service, "GET", "/users/ada", Body::empty()).await),
        "users named ada"
    );
    assert_eq!(
        ok(send(&service, "GET", "/users/ada%20l", Body::empty()).await),
        "users named ada l"
    );
    assert_eq!(
        ok(send(&service, "GET", "/only/gb/7", Body::empty()).await),
        "only"
    );
    for path in ["/users/Ada", "/users/4a", "/only/gbr/7", "/only/gb/77"] {
        let reply = send(&service, "GET", path, Body::empty()).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["error"], "NOT_FOUND", "{path}");
    }
}

/// A mounted service that answers with the URI it was given.
fn echo_uri() -> impl tower::Service<
    Request,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<http::Response<String>, std::convert::Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|request: Request| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(request.uri().to_string()))
    })
}

#[tokio::test]
async fn a_route_s_layers_wrap_its_405_so_a_cors_layer_answers_the_preflight() {
    let router = Router::new()
        .route(
            "/cors",
            get(fast).layer(tower_http::cors::CorsLayer::permissive()),
        )
        .route("/marked", get(fast).layer(mark("x-marked")))
        .route("/marked", post(fast))
        .route("/posted", post(fast).layer(mark("x-marked")))
        .route("/plain", get(fast));
    let service = service(&router, |_| {});

    // The browser's preflight before a cross-origin GET: CORS answers it.
    let mut preflight = Request::new(Body::empty());
    *preflight.method_mut() = http::Method::OPTIONS;
    *preflight.uri_mut() = "/cors".parse().unwrap();
    let headers = preflight.headers_mut();
    headers.insert("origin", HeaderValue::from_static("https://app.example"));
    headers.insert(
        "access-control-request-method",
        HeaderValue::from_static("GET"),
    );
    let response = service
        .call(preflight, "127.0.0.1:4000".parse().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");

    // A 405 goes through the route's layers, with the route's whole `Allow`.
    let reply = send(&service, "DELETE", "/marked", Body::empty()).await;
    assert_eq!(
        reply.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        reply.text()
    );
    assert_eq!(reply.headers["x-marked"], "yes");
    assert_eq!(reply.headers["allow"], "GET, POST, HEAD");
    assert_eq!(reply.json()["error"], "METHOD_NOT_ALLOWED");
    // HEAD to a route without GET: the layered 405, without a body.
    let reply = send(&service, "HEAD", "/posted", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["x-marked"], "yes");
    assert!(reply.body.is_empty(), "{}", reply.text());
    // A route without layers: the plain 405.
    let reply = send(&service, "DELETE", "/plain", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn a_mount_prefix_with_a_parameter_strips_what_the_prefix_matched() {
    // A mount at `/` too: `/plain/` is still the `/plain` mount's (its catch-all
    // takes one character at least, the root mount's took it).
    let router = Router::new()
        .mount("/tenants/{tenant}", echo_uri())
        .mount("/plain", echo_uri())
        .mount(
            "/",
            tower::service_fn(|_: Request| async {
                Ok::<_, std::convert::Infallible>(http::Response::new("root".to_owned()))
            }),
        );
    let service = service(&router, |_| {});
    for (path, seen) in [
        ("/tenants/acme-corporation/x?q=1", "/x?q=1"),
        // Shorter than the prefix's pattern: it panicked the connection's task.
        ("/tenants/a/x", "/x"),
        ("/tenants/a", "/"),
        ("/tenants/a/", "/"),
        ("/plain/deep/er", "/deep/er"),
        ("/plain/", "/"),
        ("/elsewhere/x", "root"),
        // An absolute URI (as HTTP/2's `:authority` gives): scheme and host kept.
        ("http://example.com/plain/x?y", "http://example.com/x?y"),
    ] {
        let reply = send(&service, "GET", path, Body::empty()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(reply.text(), seen, "{path}");
    }
}

#[tokio::test]
async fn a_path_that_fails_a_constraint_goes_to_the_mount_that_also_matches_it() {
    async fn user(Path(id): Path<u64>) -> String {
        format!("user {id}")
    }
    let router = Router::new()
        .route("/users/{id:[0-9]+}", get(user))
        .route("/files/{*path:[a-z/]+}", get(fast))
        .mount("/", echo_uri());
    let app = service(&router, |_| {});
    let reply = send(&app, "GET", "/users/42", Body::empty()).await;
    assert_eq!(reply.text(), "user 42");
    for path in ["/users/me", "/files/A1", "/elsewhere"] {
        let reply = send(&app, "GET", path, Body::empty()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(reply.text(), path, "{path} reaches the mount");
    }
    // A value that is not UTF-8 cannot meet the constraint: past it too.
    let reply = send(&app, "GET", "/users/%FF", Body::empty()).await;
    assert_eq!(reply.text(), "/users/%FF");
    // Without a mount, still a 404.
    let alone = Router::new().route("/users/{id:[0-9]+}", get(user));
    let reply = send(&service(&alone, |_| {}), "GET", "/users/me", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // A catch-all route whose pattern was first given with a constraint, then
    // without: the unconstrained one takes what other routes' constraints refuse.
    async fn any_file(Path(path): Path<String>) -> String {
        format!("file {path}")
    }
    let files = Router::new()
        .route("/files/{*path:[a-z/]+}", get(fast))
        .route("/files/{*path}", get(any_file))
        .route("/files/special/{id:[0-9]+}", get(user))
        .mount("/", echo_uri());
    let files = service(&files, |_| {});
    let reply = send(&files, "GET", "/files/special/A1", Body::empty()).await;
    assert_eq!(reply.text(), "file special/A1");
}

#[test]
#[should_panic(expected = "a mount's parameters cannot have constraints")]
fn a_mount_prefix_with_a_constraint_is_refused() {
    let _ = Router::new().mount("/t/{tenant:[a-z]+}", echo_uri());
}

#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_once_decoded_is_a_400() {
    async fn file(Path(name): Path<String>) -> String {
        name
    }
    let router = Router::new().route("/files/{name}", get(file));
    let service = service(&router, |_| {});
    let reply = send(&service, "GET", "/files/%C3%A9t%C3%A9", Body::empty()).await;
    assert_eq!(reply.text(), "été");
    // `%FE` and `%FF` were both served as U+FFFD.
    for path in ["/files/%FF", "/files/%FE", "/files/a%C3"] {
        let reply = send(&service, "GET", path, Body::empty()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.text()
        );
        let body = reply.json();
        assert_eq!(body["error"], "INVALID_PARAMETERS");
        assert_eq!(
            body["messages"]["name"], "is not valid UTF-8 once percent-decoded",
            "{path}"
        );
    }
}

#[test]
fn try_route_returns_a_method_given_twice_instead_of_panicking() {
    let router = Router::new().try_route("/x", get(fast)).expect("the first");
    let error = router
        .try_route("/x", get(fast).post(fast))
        .expect_err("GET twice");
    assert!(
        error.to_string().contains("GET already has a handler"),
        "{error}"
    );
}

#[tokio::test]
async fn a_query_key_given_twice_fills_a_list_or_is_named_in_the_400() {
    #[derive(serde::Deserialize)]
    struct Filter {
        tag: Vec<String>,
        page: Option<u32>,
    }
    async fn items(Query(filter): Query<Filter>) -> String {
        format!("{:?} {:?}", filter.tag, filter.page)
    }
    let router = Router::new().route("/items", get(items));
    let service = service(&router, |_| {});
    let reply = send(
        &service,
        "GET",
        "/items?tag=a&page=3&tag=b+c",
        Body::empty(),
    )
    .await;
    assert_eq!(reply.text(), r#"["a", "b c"] Some(3)"#);
    // A repeated key the type does not read is ignored.
    let reply = send(&service, "GET", "/items?tag=a&utm=x&utm=y", Body::empty()).await;
    assert_eq!(reply.text(), r#"["a"] None"#);
    let reply = send(&service, "GET", "/items?tag=a&page=1&page=2", Body::empty()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(
        reply.json()["messages"]["page"],
        "is given 2 times; expected one value"
    );
}

#[tokio::test]
async fn tower_http_compression_and_trace_layers_wrap_the_app_and_a_route() {
    use std::io::Read;
    use tower_http::compression::CompressionLayer;
    use tower_http::trace::TraceLayer;

    async fn big() -> nucleon_http::Json<Vec<String>> {
        nucleon_http::Json((0..200).map(|i| format!("item number {i}")).collect())
    }
    let gunzip = |reply: &Reply| {
        assert_eq!(reply.headers["content-encoding"], "gzip");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&reply.body[..])
            .read_to_string(&mut text)
            .expect("a gzip body");
        text
    };
    let gzip = |path: &str| {
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = path.parse().unwrap();
        request
            .headers_mut()
            .insert("accept-encoding", HeaderValue::from_static("gzip"));
        request
    };
    let collect = |response: nucleon_http::Response| async move {
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("a response body").to_bytes(),
        }
    };
    let remote: SocketAddr = "127.0.0.1:4000".parse().unwrap();

    // The whole app: every answer compressed for a client that accepts gzip, traced.
    let app = Router::new()
        .route("/big", get(big))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http());
    let whole = service(&app, |_| {});
    let reply = collect(whole.call(gzip("/big"), remote).await).await;
    assert_eq!(reply.status, StatusCode::OK);
    let items: Vec<String> = serde_json::from_str(&gunzip(&reply)).unwrap();
    assert_eq!(items.len(), 200);
    assert!(reply.headers.contains_key("x-request-id"));
    // The framework's own 404 goes through the app's layers too.
    let reply = collect(whole.call(gzip("/missing"), remote).await).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_str(&gunzip(&reply)).unwrap();
    assert_eq!(body["error"], "NOT_FOUND");

    // One route: compressed; its neighbour is not.
    let one = Router::new()
        .route("/big", get(big).layer(CompressionLayer::new()))
        .route("/plain", get(big));
    let routed = service(&one, |_| {});
    let reply = collect(routed.call(gzip("/big"), remote).await).await;
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&gunzip(&reply))
            .unwrap()
            .len(),
        200
    );
    let reply = collect(routed.call(gzip("/plain"), remote).await).await;
    assert!(!reply.headers.contains_key("content-encoding"));
    assert_eq!(
        serde_json::from_slice::<Vec<String>>(&reply.body)
            .unwrap()
            .len(),
        200
    );
}
