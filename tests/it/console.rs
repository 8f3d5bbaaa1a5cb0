//! The console on the HTTP listener: every page and action over real HTTP against a live
//! server with real data, the login with tokens and scopes, CSRF, and the loopback rule.

use std::net::SocketAddr;
use std::time::Duration;

use courier::domain::Timestamp;
use courier::proto::{DeliveryState, MessageState, RejectRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::write_tokens;
use crate::harness::*;
use crate::process::free_port;

/// One HTTP answer: status, `Location`, `Set-Cookie`, body.
#[derive(Debug)]
struct Page {
    status: u16,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

impl Page {
    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + "name=\"csrf\" value=\"".len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

/// A plain HTTP/1.1 client holding the console's session cookie.
struct Browser {
    addr: SocketAddr,
    cookie: Option<String>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, cookie: None }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, "").await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send("POST", path, &body).await
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> Page {
        let mut stream = TcpStream::connect(self.addr)
            .await
            .expect("connect to the console");
        let cookie = match &self.cookie {
            Some(cookie) => format!("Cookie: {cookie}\r\n"),
            None => String::new(),
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{cookie}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let header = |name: &str| {
            head.lines()
                .find(|line| line.to_ascii_lowercase().starts_with(&format!("{name}:")))
                .map(|line| line[name.len() + 1..].trim().to_owned())
        };
        let page = Page {
            status: head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            location: header("location"),
            cookie: header("set-cookie").map(|c| c.split(';').next().unwrap().to_owned()),
            body: body.to_owned(),
        };
        if let Some(cookie) = &page.cookie {
            self.cookie = Some(cookie.clone());
        }
        page
    }
}

/// Rejects the next delivery of `SUB` with `reason`; returns its message id.
async fn reject_next(server: &TestServer, reason: &str) -> String {
    let delivery = server.receive_one(SUB, Duration::from_secs(5)).await;
    server
        .consumer()
        .reject(RejectRequest {
            subscription: SUB.into(),
            receipt: delivery.receipt,
            reason: reason.into(),
        })
        .await
        .expect("Reject");
    delivery.message_id
}

#[tokio::test]
async fn the_console_shows_what_is_stuck_and_its_actions_fix_it() {
    let http = free_port();
    let (server, scheduler) = TestServer::start_driven(|config| {
        config.metrics_listen = http.to_string();
        config.checks.first_after = Duration::ZERO;
        config.checks.max_attempts = 1;
    })
    .await;
    server
        .create_subscription(fast_subscription(SUB, TOPIC, 1))
        .await;
    let delivered = server.publish(TOPIC, "fine").await;
    let fine = server.receive_one(SUB, Duration::from_secs(5)).await;
    assert_eq!(fine.message_id, delivered);
    server.ack(SUB, &[&fine.receipt]).await;
    server.publish(TOPIC, "slow-db").await;
    let timed_out = reject_next(&server, "Timeout talking to the ledger").await;
    server.publish(TOPIC, "bad-json").await;
    let bad_json = reject_next(&server, "bad JSON in field amount").await;
    let stuck = server.prepare(TOPIC, "stuck").await;
    // No checker is registered: the one allowed check gives up.
    scheduler
        .pass(Timestamp::now().plus(Duration::from_secs(1)))
        .await;
    assert_eq!(
        server.status(&stuck).await.state(),
        MessageState::Unresolved
    );

    let mut browser = Browser::new(http);
    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200, "{overview:?}");
    assert!(overview.body.contains("1 unresolved"), "{}", overview.body);
    assert!(
        overview.body.contains("2 dead letters"),
        "{}",
        overview.body
    );
    assert!(overview.body.contains(&format!(">{SUB}<")));
    assert!(overview.body.contains("<svg"), "the rate charts");
    assert!(overview.body.contains("http-equiv=\"refresh\""));
    // What reloads counts only what is in flight; the retained totals come on request.
    assert!(
        !overview.body.contains("<th>Acked</th>"),
        "{}",
        overview.body
    );
    let totals = browser.get("/?totals=1").await;
    assert_eq!(totals.status, 200, "{totals:?}");
    assert!(totals.body.contains("<th>Acked</th>"), "{}", totals.body);
    assert!(totals.body.contains("<th>Confirmed</th>"));
    assert!(!totals.body.contains("http-equiv=\"refresh\""));
    assert!(totals.body.contains("1 unresolved"));

    let found = browser
        .get(&format!("/messages?producer={PRODUCER}&key=bad-json"))
        .await;
    assert_eq!(found.status, 303);
    assert_eq!(
        found.location.as_deref(),
        Some(format!("/messages/{bad_json}").as_str())
    );
    let detail = browser.get(&format!("/messages/{bad_json}")).await;
    assert_eq!(detail.status, 200);
    assert!(
        detail.body.contains("Rejected by the consumer"),
        "{}",
        detail.body
    );
    assert!(detail.body.contains("bad JSON in field amount"));
    assert!(detail.body.contains("Shown as text"));
    let happy = browser.get(&format!("/messages/{delivered}")).await;
    assert!(
        happy.body.contains("Acked by the consumer"),
        "{}",
        happy.body
    );
    let listing = browser
        .get(&format!("/messages?topic={TOPIC}&outcome=DEAD_LETTERED"))
        .await;
    assert!(listing.body.contains(&timed_out) && listing.body.contains(&bad_json));
    assert!(!listing.body.contains(&delivered));
    let missing = browser
        .get("/messages/0190a000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("not found") && !missing.body.contains("NotFound"));

    // The dry run counts what the filter chooses; Redrive moves exactly that.
    let filtered = format!("/dead-letters?subscription={SUB}&error=timeout");
    let dead = browser.get(&filtered).await;
    assert!(
        dead.body.contains("Dry run: 1 dead letter match"),
        "{}",
        dead.body
    );
    assert!(dead.body.contains(&timed_out) && !dead.body.contains(&bad_json));
    let csrf = dead.csrf();
    let forged = browser
        .post(
            "/dead-letters",
            &[
                ("subscription", SUB),
                ("action", "redrive-all"),
                ("csrf", "00"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(
        forged
            .body
            .contains("did not come from this console session")
    );
    let redriven = browser
        .post(
            "/dead-letters",
            &[
                ("subscription", SUB),
                ("error", "timeout"),
                ("action", "redrive-all"),
                ("rate", "0"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(redriven.status, 303, "{redriven:?}");
    assert!(redriven.location.unwrap().contains("Redrove+1"));
    assert_eq!(
        server.delivery_status(&timed_out, SUB).await.state(),
        DeliveryState::Pending
    );
    assert_eq!(
        server.delivery_status(&bad_json, SUB).await.state(),
        DeliveryState::Dead
    );
    let discarded = browser
        .post(
            "/dead-letters",
            &[
                ("subscription", SUB),
                ("action", "discard-selected"),
                ("selected", &bad_json),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(discarded.status, 303, "{discarded:?}");
    assert_eq!(
        server.delivery_status(&bad_json, SUB).await.state(),
        DeliveryState::Discarded
    );

    // The unresolved message is committed from its page.
    let unresolved = browser.get("/unresolved").await;
    assert!(unresolved.body.contains(&stuck), "{}", unresolved.body);
    assert!(unresolved.body.contains("no checker registered"));
    let resolved = browser
        .post(
            "/unresolved/resolve",
            &[
                ("id", &stuck),
                ("decision", "commit"),
                ("back", "/unresolved"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(resolved.status, 303, "{resolved:?}");
    assert_eq!(server.status(&stuck).await.state(), MessageState::Confirmed);
    let timeline = browser.get(&format!("/messages/{stuck}")).await;
    assert!(
        timeline.body.contains("Resolved COMMIT by operator"),
        "{}",
        timeline.body
    );
    assert!(timeline.body.contains("by the operator"));
    assert!(
        browser
            .get("/unresolved")
            .await
            .body
            .contains("No unresolved messages")
    );

    // Subscriptions: create one, then change its ack deadline.
    let created = browser
        .post(
            "/subscriptions",
            &[
                ("mode", "create"),
                ("name", "audit"),
                ("topic", TOPIC),
                ("ack_deadline", "45s"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{created:?}");
    let edited = browser
        .post(
            "/subscriptions",
            &[
                ("mode", "update"),
                ("name", "audit"),
                ("topic", TOPIC),
                ("ack_deadline", "2m"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(edited.status, 303, "{edited:?}");
    let list = browser.get("/subscriptions").await;
    assert!(
        list.body.contains("audit") && list.body.contains("2m"),
        "{}",
        list.body
    );
    let bad = browser
        .post(
            "/subscriptions",
            &[
                ("mode", "create"),
                ("name", "x y"),
                ("topic", TOPIC),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("subscription.name"), "{}", bad.body);
}

#[tokio::test]
async fn the_console_asks_for_a_token_and_read_may_only_look() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    write_tokens(
        &tokens,
        &[
            ("viewer", "read-secret-1", &["read"]),
            ("oncall", "admin-secret-1", &["admin"]),
            ("app", "app-secret-1", &["produce:*"]),
        ],
    );
    let http = free_port();
    let server = TestServer::start_with(|config| {
        config.auth.tokens_file = Some(tokens.clone());
        config.metrics_listen = http.to_string();
    })
    .await;

    let mut browser = Browser::new(http);
    let first = browser.get("/").await;
    assert_eq!(
        (first.status, first.location.as_deref()),
        (303, Some("/login"))
    );
    assert_eq!(browser.get("/login").await.status, 200);
    let wrong = browser.post("/login", &[("token", "guess")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not valid"));
    let app = browser.post("/login", &[("token", "app-secret-1")]).await;
    assert!(app.body.contains("neither scope read nor admin"), "{app:?}");

    let login = browser.post("/login", &[("token", "read-secret-1")]).await;
    assert_eq!(login.status, 303);
    let cookie = login.cookie.clone().expect("a session cookie");
    assert!(cookie.starts_with("courier_console="));
    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("viewer") && overview.body.contains("(read only)"));
    let csrf = overview.csrf();
    let refused = browser
        .post(
            "/subscriptions",
            &[
                ("mode", "create"),
                ("name", "s2"),
                ("topic", TOPIC),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("scope admin"), "{}", refused.body);

    let mut oncall = Browser::new(http);
    oncall.post("/login", &[("token", "admin-secret-1")]).await;
    let overview = oncall.get("/").await;
    let created = oncall
        .post(
            "/subscriptions",
            &[
                ("mode", "create"),
                ("name", "s2"),
                ("topic", TOPIC),
                ("csrf", &overview.csrf()),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{created:?}");
    // Another session's token is not this one's.
    let stolen = oncall
        .post(
            "/subscriptions",
            &[
                ("mode", "create"),
                ("name", "s3"),
                ("topic", TOPIC),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(stolen.status, 403);
    let out = oncall.post("/logout", &[("csrf", &overview.csrf())]).await;
    assert!(out.cookie.unwrap().ends_with('='));
    drop(server);
}

#[tokio::test]
async fn without_auth_the_console_is_served_only_on_loopback() {
    let open = free_port();
    let port = free_port().port();
    let server = TestServer::start_with(|config| {
        config.metrics_listen = format!("0.0.0.0:{port}");
    })
    .await;
    let page = Browser::new(SocketAddr::from(([127, 0, 0, 1], port)))
        .get("/")
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("auth.tokens_file"), "{}", page.body);
    // /metrics stays open as before.
    let metrics = Browser::new(SocketAddr::from(([127, 0, 0, 1], port)))
        .get("/metrics")
        .await;
    assert_eq!(metrics.status, 200);
    drop(server);

    let server = TestServer::start_with(|config| config.metrics_listen = open.to_string()).await;
    let page = Browser::new(open).get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("local operator"));
    drop(server);
}

#[tokio::test]
async fn a_form_read_before_a_restart_is_accepted_after_it() {
    // The CSRF key comes from the callback signing key in the database, which every replica
    // and every restart shares: a form does not expire with the process that served it.
    let http = free_port();
    let mut server =
        TestServer::start_with(|config| config.metrics_listen = http.to_string()).await;
    let mut browser = Browser::new(http);
    let form = browser.get("/subscriptions/edit").await;
    assert_eq!(form.status, 200, "{form:?}");
    let csrf = form.csrf();

    server.restart().await;
    let created = browser
        .post(
            "/subscriptions",
            &[
                ("mode", "create"),
                ("name", "kept-across-restart"),
                ("topic", TOPIC),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{created:?}");
    let list = browser.get("/subscriptions").await;
    assert!(list.body.contains("kept-across-restart"), "{}", list.body);
}
