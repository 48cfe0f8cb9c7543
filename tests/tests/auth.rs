//! Authentication as an OAuth resource server, over real HTTP: static bearer tokens, JWTs
//! verified with a JWKS (file and URL) or an HS256 secret, the RFC 9728 metadata, 401/403
//! with `WWW-Authenticate`, and sessions bound to the principal that created them.

use e2e_tests::{Gateway, RawClient, RedisServer, WorkerProcess};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-0123456789abcdef00";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn es256_token(claims: Value) -> String {
    let pem = std::fs::read(fixture("es256-test-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-es256".into());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn hs256_token(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn authed(url: &str, token: &str) -> RawClient {
    let mut c = RawClient::new(url);
    c.bearer = Some(token.to_owned());
    c
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn initialize_status(url: &str, token: Option<&str>) -> (u16, String) {
    let mut c = RawClient::new(url);
    c.bearer = token.map(str::to_owned);
    let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}});
    let r = c.post(&body).await.unwrap();
    (r.status().as_u16(), www_authenticate(&r))
}

#[tokio::test]
async fn static_tokens_authenticate_and_sessions_belong_to_their_principal() {
    let gw = Gateway::start(&[
        "--auth-token",
        &format!("alice:{ALICE}"),
        "--auth-token",
        &format!("bob:{BOB}"),
    ])
    .unwrap();

    // No token, a wrong token: 401 naming the protected resource metadata.
    let (status, challenge) = initialize_status(&gw.url(), None).await;
    assert_eq!(status, 401);
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("/.well-known/oauth-protected-resource/mcp"),
        "{challenge}"
    );
    let (status, challenge) = initialize_status(&gw.url(), Some("not-a-token-at-all-really")).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // The metadata document is public.
    let meta: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(meta["resource"], format!("{}/mcp", gw.base));
    assert_eq!(meta["bearer_methods_supported"], json!(["header"]));

    // Alice's session works with her token, and is unknown to Bob (404, not 403: a
    // session id must not even be confirmed to another principal).
    let mut alice = authed(&gw.url(), ALICE);
    alice.initialize("2025-11-25").await.unwrap();
    let events = alice
        .call_tool(1, "send_notification", json!({"message": "mine"}), None)
        .await
        .unwrap();
    assert_eq!(e2e_tests::client::messages(&events).len(), 2);
    let mut bob = alice.clone();
    bob.bearer = Some(BOB.to_owned());
    let r = bob
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(bob.get(None).await.unwrap().status(), 404);
    assert_eq!(bob.delete().await.unwrap(), 404);
    assert_eq!(alice.delete().await.unwrap(), 204);
}

#[tokio::test]
async fn jwts_are_verified_with_a_jwks_file() {
    let resource = "https://mcp.example.test/mcp";
    let jwks = fixture("es256-test-jwks.json");
    let gw = Gateway::start(&[
        "--jwt-jwks-file",
        jwks.to_str().unwrap(),
        "--jwt-issuer",
        "https://auth.example.test",
        "--resource-url",
        resource,
        "--authorization-server",
        "https://auth.example.test",
        "--required-scope",
        "mcp:tools",
    ])
    .unwrap();
    let claims = |overrides: Value| {
        let mut c = json!({"iss": "https://auth.example.test", "aud": resource, "sub": "carol", "exp": now() + 300, "scope": "mcp:tools other"});
        for (k, v) in overrides.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let (status, _) = initialize_status(&gw.url(), Some(&es256_token(claims(json!({}))))).await;
    assert_eq!(status, 200);
    for (case, bad) in [
        ("expired", json!({"exp": now() - 120})),
        ("not yet valid", json!({"nbf": now() + 600})),
        (
            "another audience",
            json!({"aud": "https://elsewhere.test/mcp"}),
        ),
        ("another issuer", json!({"iss": "https://evil.test"})),
    ] {
        let (status, challenge) =
            initialize_status(&gw.url(), Some(&es256_token(claims(bad)))).await;
        assert_eq!(status, 401, "{case}");
        assert!(challenge.contains("invalid_token"), "{case}: {challenge}");
    }
    // A valid token without the required scope: 403 with the scope it needs.
    let (status, challenge) = initialize_status(
        &gw.url(),
        Some(&es256_token(claims(json!({"scope": "other"})))),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("scope=\"mcp:tools\""),
        "{challenge}"
    );
    // A token signed with an HS256 secret the gateway does not have.
    let (status, _) = initialize_status(
        &gw.url(),
        Some(&hs256_token("some-secret", claims(json!({})))),
    )
    .await;
    assert_eq!(status, 401);

    let meta: Value = reqwest::get(format!("{}/.well-known/oauth-protected-resource", gw.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], resource);
    assert_eq!(
        meta["authorization_servers"],
        json!(["https://auth.example.test"])
    );
    assert_eq!(meta["scopes_supported"], json!(["mcp:tools"]));
}

// Multi-threaded: the gateways fetch the JWKS from this test while it waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_urls_and_hs256_secrets_work_and_bind_sessions_across_gateways() {
    // A JWKS served over HTTP by the test, as an authorization server would.
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("es256-test-jwks.json")).unwrap())
            .unwrap();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let args = [
        "--redis-url",
        &url,
        "--jwt-jwks-url",
        &jwks_url,
        "--jwt-hs256-secret",
        "a-shared-secret-for-tests",
    ];
    let g0 = Gateway::start(&args).unwrap();
    let g1 = Gateway::start(&args).unwrap();
    let _w = WorkerProcess::start(&url, &[]).unwrap();

    let dave = es256_token(json!({"sub": "dave", "exp": now() + 300}));
    let erin = hs256_token(
        "a-shared-secret-for-tests",
        json!({"sub": "erin", "exp": now() + 300}),
    );
    let mut on_g0 = authed(&g0.url(), &dave);
    on_g0.initialize("2025-11-25").await.unwrap();
    // The same principal on the other gateway: the session is theirs there too.
    let mut on_g1 = on_g0.clone();
    on_g1.url = g1.url();
    let r = on_g1
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Another principal on the other gateway: 404.
    on_g1.bearer = Some(erin.clone());
    let r = on_g1
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Erin's own HS256 token works for her own session.
    let mut erin_client = authed(&g1.url(), &erin);
    erin_client.initialize("2025-06-18").await.unwrap();
}
