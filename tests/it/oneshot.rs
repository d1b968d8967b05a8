//! Each HTTP module in process, one request at a time through the whole router
//! (`tower::ServiceExt::oneshot`, no socket): routes, status codes, error bodies. Fast, beside the
//! real-server tests that go over HTTP to a running `rosterd`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::common::{Backend, TestDb};

/// The whole router of a configured rosterd, and whether its store is ready yet.
async fn app(ready: bool) -> (axum::Router, TestDb, roster::app::Services) {
    let mut db = TestDb::new(Backend::Sqlite);
    db.cfg.http.max_body_bytes = 4096;
    let services = roster::app::open(&db.cfg).await.unwrap();
    let state = roster::app::AppState::new(&db.cfg);
    if ready {
        let sync = services.sync(&db.cfg);
        let sign_in = services.sign_in(&db.cfg, &sync);
        state.ready(&services, sync, sign_in);
    }
    (state.router(&db.cfg), db, services)
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = req;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40000))));
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
    (parts.status, parts.headers, bytes)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// `http`: health, readiness before and after the store, metrics, unknown paths, the body limit.
#[tokio::test]
async fn http_routes_and_error_bodies() {
    let (starting, _db, _s) = app(false).await;
    let (status, _, body) = send(&starting, get("/healthz")).await;
    assert_eq!((status, json(&body)["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, _, body) = send(&starting, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&body)["status"], "unavailable");

    let (app, _db, _s) = app(true).await;
    let (status, _, body) = send(&app, get("/readyz")).await;
    assert_eq!((status, json(&body)["store"].as_str()), (StatusCode::OK, Some("sqlite")));
    let (status, headers, body) = send(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    assert!(String::from_utf8_lossy(&body).contains("roster_members"), "no directory counts");
    let (status, _, body) = send(&app, get("/no/such/path")).await;
    assert_eq!((status, json(&body)["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    // Every response carries a request id.
    let (_, headers, _) = send(&app, get("/healthz")).await;
    assert!(headers.contains_key("x-request-id"));
}

/// `scim`: authentication, the SCIM error form (including the body limit's answer), a list.
#[tokio::test]
async fn scim_routes_and_error_bodies() {
    let (app, _db, s) = app(true).await;
    let actor = roster::directory::model::Actor::new(roster::directory::model::Source::console(), "admin");
    let token = s.access.create_token(&actor, "entra", false).await.unwrap();
    let authed =
        |req: axum::http::request::Builder| req.header(header::AUTHORIZATION, format!("Bearer {token}"));

    // A token of another kind (an IM server's, for the archive) is not a SCIM client's.
    let archive = s
        .access
        .create_token_of(&actor, "chat", roster::access::store::TokenKind::Archive, false)
        .await
        .unwrap();
    let other = Request::get("/scim/v2/Users").header(header::AUTHORIZATION, format!("Bearer {archive}"));
    let (status, _, body) = send(&app, other.body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", String::from_utf8_lossy(&body));

    let (status, headers, body) = send(&app, get("/scim/v2/Users")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
    assert_eq!(json(&body)["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");

    let (status, headers, body) =
        send(&app, authed(Request::get("/scim/v2/Users")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/scim+json");
    assert_eq!(json(&body)["totalResults"], 0);

    let (status, _, body) =
        send(&app, authed(Request::get("/scim/v2/Nope")).body(Body::empty()).unwrap()).await;
    assert_eq!((status, json(&body)["status"].as_str()), (StatusCode::NOT_FOUND, Some("404")));

    let bad = authed(Request::post("/scim/v2/Users"))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _, body) = send(&app, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json(&body)["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");

    let big = authed(Request::post("/scim/v2/Users"))
        .header(header::CONTENT_TYPE, "application/scim+json")
        .body(Body::from(vec![b' '; 10_000]))
        .unwrap();
    let (status, _, body) = send(&app, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&body)["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    // Nothing was created by the refused requests.
    assert_eq!(s.directory.store().counts().await.unwrap().members, 0);
}

/// `admin`: the sign-in page and its headers, redirects to sign in, CSRF on state changes.
#[tokio::test]
async fn admin_routes_and_refusals() {
    let (app, _db, s) = app(true).await;
    let (status, headers, body) = send(&app, get("/admin/login")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'self'"));
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(String::from_utf8_lossy(&body).contains("<form"));

    let (status, headers, _) = send(&app, get("/admin/members")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/admin/login?next=/admin/members");

    let (status, headers, _) = send(&app, get("/admin/")).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/admin");

    // A state change without a session is sent to sign in; one from another site is refused.
    let post = |origin: Option<&str>| {
        let mut r = Request::post("/admin/org/units").header(header::HOST, "roster.example");
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("name=x"))
            .unwrap()
    };
    let (status, _, _) = send(&app, post(None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = send(&app, post(Some("https://evil.example"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(s.directory.store().counts().await.unwrap().org_units, 0);
}

/// `api`: the sign-in API and attendance punches: no token, a token of another kind, a body
/// that is not the request, before the store is ready.
#[tokio::test]
async fn api_routes_and_error_bodies() {
    use roster::access::store::TokenKind;
    let (starting, _db0, _s0) = app(false).await;
    let post = |path: &str, token: Option<&str>, body: &str| {
        let mut r = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        r.body(Body::from(body.to_owned())).unwrap()
    };
    let (status, _, body) = send(&starting, post("/api/v1/sign-in", None, "{}")).await;
    assert_eq!((status, json(&body)["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("starting")));

    let (app, _db, s) = app(true).await;
    let actor = crate::common::console();
    let sign_in = s.access.create_token_of(&actor, "im", TokenKind::SignIn, false).await.unwrap();
    let clock = s.access.create_token_of(&actor, "clock", TokenKind::Attendance, false).await.unwrap();
    for path in ["/api/v1/sign-in", "/api/v1/attendance/punches"] {
        let (status, _, body) = send(&app, post(path, None, "{}")).await;
        assert_eq!(
            (status, json(&body)["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized")),
            "{path}"
        );
    }
    let (status, _, body) = send(&app, post("/api/v1/sign-in", Some(&clock), "{}")).await;
    assert_eq!((status, json(&body)["error"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_token_kind")));
    let (status, _, body) = send(&app, post("/api/v1/attendance/punches", Some(&sign_in), "{}")).await;
    assert_eq!((status, json(&body)["error"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_token_kind")));
    let (status, _, body) = send(&app, post("/api/v1/sign-in", Some(&sign_in), "{\"account\": 1}")).await;
    assert_eq!((status, json(&body)["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    let (status, _, body) =
        send(&app, post("/api/v1/sign-in", Some(&sign_in), r#"{"account":"1","password":"x","extra":1}"#))
            .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) =
        send(&app, post("/api/v1/sign-in", Some(&sign_in), r#"{"account":"nobody","password":"x"}"#)).await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let many: Vec<Value> = (0..5001)
        .map(|i| serde_json::json!({"id": i.to_string(), "account": "1", "at": "2026-12-03T09:00:00Z"}))
        .collect();
    let (status, _, _) = send(
        &app,
        post("/api/v1/attendance/punches", Some(&clock), &serde_json::json!({"punches": many}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}
