//! SCIM over real HTTP against a running rosterd, on both stores: what Entra ID and Okta send,
//! and what a broken client sends.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use roster::directory::model::Actor;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{Backend, TestDb, console, on_both_stores};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const ROSTER: &str = "urn:roster:params:scim:schemas:extension:roster:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A running rosterd (served in-process on a real socket) and a client with a token.
pub struct Server {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
    pub _db: TestDb,
    pub directory: crate::common::Opened,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Server {
    pub async fn start(backend: Backend, tune: impl FnOnce(&mut roster::config::Config)) -> Server {
        let mut db = TestDb::new(backend);
        tune(&mut db.cfg);
        let directory = db.open().await;
        let token = directory.create_token(&console(), "entra", false).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/scim/v2", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(roster::app::run(listener, db.cfg.clone(), stop.clone()));
        let server = Server { base, token, http: crate::common::http(), _db: db, directory, stop };
        // Ready when the store is connected.
        for _ in 0..100 {
            if server.get("/ServiceProviderConfig").await.status == StatusCode::OK {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("rosterd did not become ready");
    }

    pub async fn token_for(&self, name: &str, adopt: bool) -> String {
        self.directory.create_token(&console(), name, adopt).await.unwrap()
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_as(Some(&self.token.clone()), method, path, body, &[]).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, ops: Value) -> Answer {
        self.call(Method::PATCH, path, Some(json!({ "schemas": [PATCH], "Operations": ops }))).await
    }
}

/// What Entra ID sends to create a user.
fn entra_user(name: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER, ENT],
        "externalId": external_id,
        "userName": format!("{name}@example.com"),
        "active": true,
        "displayName": format!("{name} Example"),
        "emails": [{ "primary": true, "type": "work", "value": format!("{name}@example.com") }],
        "name": { "formatted": format!("{name} Example"), "familyName": "Example", "givenName": name },
        "title": "Engineer",
        ENT: { "employeeNumber": format!("E-{name}") },
    })
}

fn error_of(a: &Answer) -> (u16, Option<&str>) {
    assert_eq!(a.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{:?}", a.body);
    assert_eq!(a.body["status"].as_str(), Some(a.status.as_str()), "status is a string of the HTTP status");
    (a.status.as_u16(), a.body["scimType"].as_str())
}

on_both_stores!(
    discovery_describes_the_server,
    tokens_are_required,
    user_lifecycle_as_entra_does_it,
    bad_input_gets_scim_errors,
    patch_accepts_what_real_clients_send,
    filters_sorting_and_paging_run_in_the_store,
    group_membership_changes_touch_only_the_named_members,
    bulk_resolves_bulk_ids,
    sources_do_not_take_over_each_others_members,
    org_units_and_department_paths,
);

async fn discovery_describes_the_server(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    let a = s.get("/ServiceProviderConfig").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/scim+json");
    assert_eq!(a.body["patch"]["supported"], true);
    assert_eq!(a.body["bulk"]["maxOperations"], 1000);
    assert_eq!(a.body["filter"]["maxResults"], 1000);
    assert_eq!(a.body["etag"]["supported"], true);
    let types = s.get("/ResourceTypes").await;
    let names: BTreeSet<&str> =
        types.body["Resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["Group", "OrgUnit", "User"]));
    let schemas = s.get("/Schemas").await;
    assert_eq!(schemas.body["totalResults"], 5);
    let ent = s.get(&format!("/Schemas/{ENT}")).await;
    assert!(ent.body["attributes"].as_array().unwrap().iter().any(|a| a["name"] == "manager"));
    assert_eq!(s.get("/Schemas/urn:nope").await.status, 404);
}

async fn tokens_are_required(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    let none = s.call_as(None, Method::GET, "/Users", None, &[]).await;
    assert_eq!(error_of(&none), (401, None));
    assert!(none.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let bad = s.call_as(Some("rst_0000"), Method::GET, "/Users", None, &[]).await;
    assert_eq!(bad.status, 401);
    // Revoked through another `DirectoryService` (like the CLI): refused once the daemon's
    // verified-token cache (5 s) lets go of it.
    s.directory.revoke_token(&console(), "entra").await.unwrap();
    let start = std::time::Instant::now();
    while s.get("/Users").await.status != 401 {
        assert!(start.elapsed() < std::time::Duration::from_secs(8), "a revoked token still works");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn user_lifecycle_as_entra_does_it(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    // Connection test: a filter for a user that does not exist.
    let probe = s.get("/Users?filter=userName%20eq%20%22nobody%40example.com%22").await;
    assert_eq!(probe.status, 200);
    assert_eq!(
        (probe.body["totalResults"].as_i64(), probe.body["Resources"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );

    let created = s.post("/Users", entra_user("alice", "ext-alice")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["location"], format!("{}/Users/{id}", s.base).as_str());
    assert_eq!(created.headers["etag"], "W/\"1\"");
    assert_eq!(created.body["externalId"], "ext-alice");
    assert_eq!(created.body[ROSTER]["accountNumber"], 1000);
    assert_eq!(created.body[ENT]["employeeNumber"], "E-alice");
    let bob = s.post("/Users", entra_user("bob", "ext-bob")).await;
    assert_eq!(bob.body[ROSTER]["accountNumber"], 1001, "consecutive numbers");

    let got = s.get(&format!("/Users/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["userName"], "alice@example.com");
    assert_eq!(got.body["name"]["givenName"], "alice");
    let found = s.get("/Users?filter=userName%20eq%20%22ALICE%40example.com%22").await;
    assert_eq!(found.body["totalResults"], 1, "userName is case-insensitive");
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());

    // Okta-style full PUT without `active` leaves the member active.
    let mut put = entra_user("alice", "ext-alice");
    put.as_object_mut().unwrap().remove("active");
    put["title"] = json!("Lead");
    let replaced = s.call(Method::PUT, &format!("/Users/{id}"), Some(put)).await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    assert_eq!(
        (replaced.body["active"].as_bool(), replaced.body["title"].as_str()),
        (Some(true), Some("Lead"))
    );

    // Deactivation: suspended, still returned by GET and filters.
    let off = s
        .patch(&format!("/Users/{id}"), json!([{ "op": "Replace", "path": "active", "value": "False" }]))
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    assert_eq!(off.body["active"], false);
    let inactive = s.get("/Users?filter=active%20eq%20false").await;
    assert_eq!(inactive.body["totalResults"], 1);
    let m = s.directory.store().member(uuid::Uuid::parse_str(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(m.state, roster::directory::model::MemberState::Suspended);

    let del = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(del.status, 204);
    assert_eq!(error_of(&s.get(&format!("/Users/{id}")).await), (404, None));
    let t = s.directory.store().tombstone(m.id).await.unwrap().expect("a tombstone");
    assert_eq!(t.source.as_str(), "scim:entra");
    assert_eq!(s.call(Method::DELETE, &format!("/Users/{id}"), None).await.status, 404);
}

async fn bad_input_gets_scim_errors(b: Backend) {
    let s = Server::start(b, |c| {
        c.http.max_body_bytes = 4096;
        c.scim.max_results = 2;
    })
    .await;
    let alice = s.post("/Users", entra_user("alice", "a")).await;
    let id = alice.body["id"].as_str().unwrap().to_owned();
    let before = s.directory.store().counts().await.unwrap();

    let raw = |body: &'static str| {
        s.http
            .post(format!("{}/Users", s.base))
            .bearer_auth(&s.token)
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
    };
    let r = raw("{\"userName\": ").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scimType"], "invalidSyntax");

    let cases = [
        (json!({"userName": "x", "emails": "x@example.com"}), 400, Some("invalidValue")),
        (json!({"userName": "x", "active": "maybe"}), 400, Some("invalidValue")),
        (json!({"schemas": ["urn:example:unknown"], "userName": "x"}), 400, Some("invalidValue")),
        (json!({"displayName": "no user name"}), 400, Some("invalidValue")),
        (json!({"userName": "bad name"}), 400, Some("invalidValue")),
        (entra_user("alice", "other"), 409, Some("uniqueness")),
        (entra_user("alice2", "a"), 409, Some("uniqueness")),
    ];
    for (body, status, scim_type) in cases {
        let a = s.post("/Users", body.clone()).await;
        assert_eq!(error_of(&a), (status, scim_type), "{body}: {:?}", a.body);
    }
    let big = json!({"userName": "big", "title": "x".repeat(10_000)});
    assert_eq!(error_of(&s.post("/Users", big).await).0, 413);
    let ro = s.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "id", "value": "x"}])).await;
    assert_eq!(error_of(&ro), (400, Some("mutability")));
    let ro = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": format!("{ROSTER}:accountNumber"), "value": 7}]),
        )
        .await;
    assert_eq!(error_of(&ro), (400, Some("mutability")));
    let bad_path = s
        .patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "emails[type eq", "value": 1}]))
        .await;
    assert_eq!(error_of(&bad_path), (400, Some("invalidPath")));
    for filter in ["userName%20eq", "nosuch%20eq%20%22x%22", "userName%20gt%2042", "(userName%20eq%20%22a%22"]
    {
        let a = s.get(&format!("/Users?filter={filter}")).await;
        assert_eq!(error_of(&a), (400, Some("invalidFilter")), "{filter}");
    }
    assert_eq!(error_of(&s.get("/Users/not-a-uuid").await), (404, None));
    assert_eq!(error_of(&s.get(&format!("/Users/{}", uuid::Uuid::now_v7())).await), (404, None));
    let stale = s
        .call_as(
            Some(&s.token),
            Method::PUT,
            &format!("/Users/{id}"),
            Some(entra_user("alice", "a")),
            &[("if-match", "W/\"9\"")],
        )
        .await;
    assert_eq!(error_of(&stale), (412, None));
    let fresh = s
        .call_as(
            Some(&s.token),
            Method::PUT,
            &format!("/Users/{id}"),
            Some(entra_user("alice", "a")),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.body);
    let wrong_type = s
        .http
        .post(format!("{}/Users", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    // count over maxResults is lowered to it (RFC 7644 §3.4.2.4).
    s.post("/Users", entra_user("carol", "c")).await;
    s.post("/Users", entra_user("dave", "d")).await;
    let page = s.get("/Users?count=500").await;
    assert_eq!((page.body["itemsPerPage"].as_i64(), page.body["totalResults"].as_i64()), (Some(2), Some(3)));
    assert_eq!(s.call(Method::DELETE, "/Users", None).await.status, 405);
    // Nothing refused was written.
    let after = s.directory.store().counts().await.unwrap();
    assert_eq!(after.members, before.members + 2);
}

async fn patch_accepts_what_real_clients_send(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    let created = s.post("/Users", entra_user("zhang", "z1")).await;
    let path = format!("/Users/{}", created.body["id"].as_str().unwrap());
    let a = s
        .patch(
            &path,
            json!([
                { "op": "Replace", "value": {
                    "name.givenName": "Wei",
                    "name.familyName": "Zhang",
                    format!("{ENT}:employeeNumber"): "E-42",
                    "active": "True",
                }},
                { "op": "Add", "path": "title", "value": "Director" },
                { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "wei.zhang@example.com" },
                { "op": "add", "path": "phoneNumbers", "value": [{ "value": "+86 138 0013 8000", "type": "mobile" }] },
            ]),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["name"]["givenName"], "Wei");
    assert_eq!(a.body["name"]["familyName"], "Zhang");
    assert_eq!(a.body[ENT]["employeeNumber"], "E-42");
    assert_eq!(a.body["title"], "Director");
    assert_eq!(a.body["emails"][0]["value"], "wei.zhang@example.com");
    assert_eq!(a.body["phoneNumbers"][0]["value"], "+8613800138000");
    assert_eq!(a.body["meta"]["version"], "W/\"2\"", "one change, one version");
    // The manager, by reference; then removed.
    let boss = s.post("/Users", entra_user("boss", "b1")).await;
    let boss_id = boss.body["id"].as_str().unwrap();
    let a = s
        .patch(
            &path,
            json!([{ "op": "add", "path": format!("{ENT}:manager"), "value": { "value": boss_id } }]),
        )
        .await;
    assert_eq!(a.body[ENT]["manager"]["value"], boss_id, "{:?}", a.body);
    let a = s.patch(&path, json!([{ "op": "remove", "path": format!("{ENT}:manager") }])).await;
    assert!(a.body[ENT].get("manager").is_none(), "{:?}", a.body);
    // A password is taken, stored hashed, and never returned.
    let a =
        s.patch(&path, json!([{ "op": "replace", "path": "password", "value": "Correct-Horse-9" }])).await;
    assert_eq!(a.status, 200);
    assert!(a.body.get("password").is_none());
    assert!(!s.get(&path).await.body.to_string().contains("Correct-Horse-9"));
    // The whole Enterprise extension, by its URN as the path; kept as sent.
    let ent = s
        .patch(
            &path,
            json!([{ "op": "add", "path": ENT, "value": {
                "department": "Research", "organization": "Example Holdings", "division": "Labs", "costCenter": "CC-7",
            }}]),
        )
        .await;
    assert_eq!(ent.status, 200, "{:?}", ent.body);
    for (k, v) in [
        ("department", "Research"),
        ("organization", "Example Holdings"),
        ("division", "Labs"),
        ("costCenter", "CC-7"),
    ] {
        assert_eq!(s.get(&path).await.body[ENT][k], v, "{k}");
    }
    let a = s.patch(&path, json!([{ "op": "replace", "path": "name.formatted", "value": "Wei Z." }])).await;
    assert_eq!(
        (a.body["displayName"].as_str(), a.body["name"]["formatted"].as_str()),
        (Some("Wei Z."), Some("Wei Z."))
    );
    // A PATCH that changes nothing writes nothing.
    let same = s.patch(&path, json!([{ "op": "replace", "path": "title", "value": "Director" }])).await;
    assert_eq!(same.body["meta"]["version"], a.body["meta"]["version"]);
}

async fn filters_sorting_and_paging_run_in_the_store(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    for (i, name) in ["amy", "ben", "cat", "dan", "eve", "fay"].iter().enumerate() {
        let mut u = entra_user(name, &format!("x{i}"));
        u["name"]["familyName"] = json!(if i % 2 == 0 { "Zhou" } else { "Li" });
        if i == 4 {
            u["emails"] = json!([{ "value": "eve@home.org", "type": "home" }]);
        }
        assert_eq!(s.post("/Users", u).await.status, 201);
    }
    let s = &s;
    let q = |f: &str| {
        let path = format!("/Users?filter={}", urlencode(f));
        async move { s.get(&path).await }
    };
    let count = |a: Answer| a.body["totalResults"].as_i64().unwrap();
    assert_eq!(count(q("name.familyName eq \"zhou\"").await), 3);
    assert_eq!(count(q("name.familyName sw \"Z\" and not (userName eq \"amy@example.com\")").await), 2);
    assert_eq!(count(q("emails[type eq \"work\" and value co \"@example.com\"]").await), 5);
    assert_eq!(count(q("emails.value ew \"home.org\" or title eq \"nobody\"").await), 1);
    assert_eq!(count(q("title pr").await), 6);
    assert_eq!(count(q("externalId eq \"x3\"").await), 1);
    assert_eq!(count(q(&format!("{USER}:userName sw \"A\"")).await), 1);
    assert_eq!(count(q(&format!("{ROSTER}:accountNumber ge 1003")).await), 3);
    assert_eq!(count(q("meta.lastModified gt \"2000-01-01T00:00:00Z\"").await), 6);
    assert_eq!(count(q("id eq \"not-a-uuid\"").await), 0);
    assert_eq!(count(q("userName co \"%\"").await), 0, "LIKE wildcards are escaped");

    // Stable pages in the requested order; attributes projects.
    let page = |start: i64| {
        let path = format!(
            "/Users?sortBy=userName&sortOrder=descending&startIndex={start}&count=4&attributes=userName"
        );
        async move { s.get(&path).await }
    };
    let p1 = page(1).await;
    let p2 = page(5).await;
    let names: Vec<&str> = p1.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2.body["Resources"].as_array().unwrap())
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fay@example.com",
            "eve@example.com",
            "dan@example.com",
            "cat@example.com",
            "ben@example.com",
            "amy@example.com"
        ]
    );
    assert_eq!((p2.body["startIndex"].as_i64(), p2.body["itemsPerPage"].as_i64()), (Some(5), Some(2)));
    assert!(p1.body["Resources"][0].get("emails").is_none(), "only the asked-for attributes");
    assert!(p1.body["Resources"][0].get("id").is_some(), "id is always returned");
    let search = s
        .post("/Users/.search", json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"b\"", "excludedAttributes": ["emails"] }))
        .await;
    assert_eq!(search.body["totalResults"], 1, "{:?}", search.body);
    assert!(search.body["Resources"][0].get("emails").is_none());
    assert_eq!(error_of(&s.get("/Users?sortBy=nosuch").await).0, 400);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn group_membership_changes_touch_only_the_named_members(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            s.post("/Users", entra_user(&format!("m{i}"), &format!("m{i}"))).await.body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let members = |list: &[String]| json!(list.iter().map(|id| json!({ "value": id })).collect::<Vec<_>>());
    let g = s.post("/Groups", json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Sales", "externalId": "g1", "members": members(&ids[..4]) })).await;
    assert_eq!(g.status, 201, "{:?}", g.body);
    let path = format!("/Groups/{}", g.body["id"].as_str().unwrap());
    let ids_of = |a: &Answer| -> BTreeSet<String> {
        a.body["members"]
            .as_array()
            .map(|m| m.iter().map(|m| m["value"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    assert_eq!(ids_of(&g).len(), 4);

    // Entra: Add with a list; remove with a value list removes only those.
    let add = s.patch(&path, json!([{ "op": "Add", "path": "members", "value": members(&ids[4..6]) }])).await;
    assert_eq!(add.status, 204, "{:?}", add.body);
    let rm =
        s.patch(&path, json!([{ "op": "Remove", "path": "members", "value": [{ "value": ids[0] }] }])).await;
    assert_eq!(rm.status, 204);
    // Okta: a filtered path.
    let rm = s
        .patch(&path, json!([{ "op": "remove", "path": format!("members[value eq \"{}\"]", ids[1]) }]))
        .await;
    assert_eq!(rm.status, 204);
    let now = s.get(&path).await;
    assert_eq!(ids_of(&now), ids[2..6].iter().cloned().collect());
    let ext = s.patch(&path, json!([{ "op": "replace", "path": "externalId", "value": "g1-renamed" }])).await;
    assert_eq!(ext.status, 204);
    let lean = s.get(&format!("{path}?excludedAttributes=members")).await;
    assert_eq!(lean.body["externalId"], "g1-renamed");
    assert!(lean.body.get("members").is_none());
    let listed = s.get("/Groups?filter=displayName%20eq%20%22sales%22&excludedAttributes=members").await;
    assert_eq!(listed.body["totalResults"], 1);
    let with_member = s.get(&format!("/Groups?filter=members%5Bvalue%20eq%20%22{}%22%5D", ids[3])).await;
    assert_eq!(with_member.body["totalResults"], 1, "{:?}", with_member.body);

    // Concurrent PATCHes to one group lose no update.
    let mut tasks = Vec::new();
    for id in ids[6..12].iter().cloned() {
        let http = s.http.clone();
        let url = format!("{}{path}", s.base);
        let token = s.token.clone();
        tasks.push(tokio::spawn(async move {
            http.patch(url)
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(json!({ "schemas": [PATCH], "Operations": [{ "op": "add", "path": "members", "value": [{ "value": id }] }] }).to_string())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    assert_eq!(ids_of(&s.get(&path).await).len(), 10);
    // PUT sets the list exactly; an unknown member is refused and changes nothing.
    let put = s
        .call(Method::PUT, &path, Some(json!({ "displayName": "Sales EMEA", "members": members(&ids[..2]) })))
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(ids_of(&put), ids[..2].iter().cloned().collect());
    let ghost = s
        .patch(
            &path,
            json!([{ "op": "add", "path": "members", "value": [{ "value": uuid::Uuid::now_v7() }] }]),
        )
        .await;
    assert_eq!(error_of(&ghost), (400, Some("invalidValue")));
    assert_eq!(s.call(Method::DELETE, &path, None).await.status, 204);
    assert_eq!(s.get(&path).await.status, 404);
}

async fn bulk_resolves_bulk_ids(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    let a = s
        .post(
            "/Bulk",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "failOnErrors": 2,
                "Operations": [
                    { "method": "POST", "path": "/Users", "bulkId": "u1", "data": entra_user("kim", "k1") },
                    { "method": "POST", "path": "/Groups", "bulkId": "g1", "data": { "displayName": "Team", "members": [{ "value": "bulkId:u1" }] } },
                    { "method": "PATCH", "path": "/Users/bulkId:u1", "data": { "Operations": [{ "op": "replace", "path": "title", "value": "Head" }] } },
                    { "method": "POST", "path": "/Users", "data": entra_user("kim", "k2") },
                    { "method": "POST", "path": "/Groups", "data": { "displayName": "T2", "members": [{ "value": "bulkId:nope" }] } },
                    { "method": "POST", "path": "/Users", "data": entra_user("never", "n") },
                ],
            }),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let ops = a.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "201", "200", "409", "409"], "stops after failOnErrors errors");
    assert_eq!(ops[3]["response"]["scimType"], "uniqueness");
    let group = s.get(ops[1]["location"].as_str().unwrap().trim_start_matches(&s.base)).await;
    let user_id = ops[0]["location"].as_str().unwrap().rsplit('/').next().unwrap();
    assert_eq!(group.body["members"][0]["value"], user_id);
    assert_eq!(s.get(&format!("/Users/{user_id}")).await.body["title"], "Head");
    assert_eq!(
        s.get("/Users?filter=userName%20eq%20%22never%40example.com%22").await.body["totalResults"],
        0
    );
    let too_many = json!({ "Operations": vec![json!({"method": "DELETE", "path": "/Users/x"}); 1001] });
    assert_eq!(error_of(&s.post("/Bulk", too_many).await), (413, Some("tooMany")));
}

async fn sources_do_not_take_over_each_others_members(b: Backend) {
    let s = Server::start(b, |_| {}).await;
    let okta = s.token_for("okta", false).await;
    let adopter = s.token_for("feishu", true).await;
    let created = s.post("/Users", entra_user("pat", "e1")).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    // Another client sees the member (no externalId of another source) but cannot change it.
    let seen = s.call_as(Some(&okta), Method::GET, &path, None, &[]).await;
    assert!(seen.body.get("externalId").is_none());
    let patch =
        json!({ "schemas": [PATCH], "Operations": [{ "op": "replace", "path": "title", "value": "x" }] });
    assert_eq!(error_of(&s.call_as(Some(&okta), Method::PATCH, &path, Some(patch), &[]).await).0, 403);
    assert_eq!(error_of(&s.call_as(Some(&okta), Method::DELETE, &path, None, &[]).await).0, 403);
    let dup = s.call_as(Some(&okta), Method::POST, "/Users", Some(entra_user("pat", "o1")), &[]).await;
    assert_eq!(error_of(&dup), (409, Some("uniqueness")));
    // A client with the adoption setting takes it over explicitly, keeping its number.
    let adopted = s.call_as(Some(&adopter), Method::POST, "/Users", Some(entra_user("pat", "f1")), &[]).await;
    assert_eq!(adopted.status, 200, "{:?}", adopted.body);
    assert_eq!(adopted.body["id"], id.as_str());
    assert_eq!(adopted.body["externalId"], "f1");
    assert_eq!(adopted.body[ROSTER]["accountNumber"], created.body[ROSTER]["accountNumber"]);
    let m = s.directory.store().member(uuid::Uuid::parse_str(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(m.source.as_str(), "scim:feishu");
    let audit = s.directory.store().audit_for("member", &id).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "member.adopt"));
    // The original client has lost it.
    assert_eq!(s.call(Method::DELETE, &path, None).await.status, 403);
    let _ = Actor::system();
}

async fn org_units_and_department_paths(b: Backend) {
    let s = Server::start(b, |c| c.scim.create_departments = true).await;
    let root = s.post("/OrgUnits", json!({ "displayName": "Sales", "externalId": "ou-1" })).await;
    assert_eq!(root.status, 201, "{:?}", root.body);
    let root_id = root.body["id"].as_str().unwrap().to_owned();
    let east = s.post("/OrgUnits", json!({ "displayName": "East", "parent": { "value": root_id } })).await;
    assert_eq!(east.body["path"], "Sales/East");
    let dup = s.post("/OrgUnits", json!({ "displayName": "East", "parent": { "value": root_id } })).await;
    assert_eq!(error_of(&dup), (409, Some("uniqueness")));

    let mut u = entra_user("lin", "l1");
    u[ENT]["department"] = json!("Sales/East/Shanghai");
    let created = s.post("/Users", u).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body[ENT]["department"], "Sales/East/Shanghai");
    let units = s.get("/OrgUnits?filter=displayName%20eq%20%22Shanghai%22").await;
    assert_eq!(units.body["totalResults"], 1);
    assert_eq!(units.body["Resources"][0]["parent"]["value"], east.body["id"]);
    let renamed = s
        .patch(
            &format!("/OrgUnits/{root_id}"),
            json!([{ "op": "replace", "path": "displayName", "value": "Sales & Marketing" }]),
        )
        .await;
    assert_eq!(renamed.status, 200, "{:?}", renamed.body);
    assert_eq!(renamed.body["displayName"], "Sales & Marketing");
    assert_eq!(renamed.body["externalId"], "ou-1", "PATCH keeps what it does not name");
    let back = s
        .patch(
            &format!("/OrgUnits/{root_id}"),
            json!([{ "op": "replace", "path": "displayName", "value": "Sales" }]),
        )
        .await;
    assert_eq!(back.status, 200);
    // Moving the user by department reuses the existing units.
    let moved = s
        .patch(
            &format!("/Users/{}", created.body["id"].as_str().unwrap()),
            json!([{ "op": "replace", "path": format!("{ENT}:department"), "value": "Sales/East" }]),
        )
        .await;
    assert_eq!(moved.body[ENT]["department"], "Sales/East", "{:?}", moved.body);
    assert_eq!(s.get("/OrgUnits").await.body["totalResults"], 3);
    // A unit with a member cannot go; an empty one can.
    let east_path = format!("/OrgUnits/{}", east.body["id"].as_str().unwrap());
    assert_eq!(error_of(&s.call(Method::DELETE, &east_path, None).await).0, 409);
    let shanghai = units.body["Resources"][0]["id"].as_str().unwrap();
    assert_eq!(s.call(Method::DELETE, &format!("/OrgUnits/{shanghai}"), None).await.status, 204);
    // No cycles through SCIM either.
    let cycle = s
        .call(
            Method::PUT,
            &format!("/OrgUnits/{root_id}"),
            Some(json!({ "displayName": "Sales", "parent": { "value": east.body["id"] } })),
        )
        .await;
    assert_eq!(error_of(&cycle).0, 409);
}
