//! Test support, shared by the store's unit tests and the integration tests
//! (`courier::store::testing`, behind the `test-support` feature, which this crate's own
//! dev-dependency on itself turns on): throwaway PostgreSQL databases, and a TCP proxy whose
//! link a test cuts and restores to play a database outage.
//!
//! The server comes from `COURIER_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); its user must be allowed to create databases.
//! Each [`TestDatabase`] is a fresh database on it, dropped (`WITH (FORCE)`) when the value is
//! dropped, even after a failed assertion. Without the variable, PostgreSQL tests skip with a
//! notice, except under `CI=true`, where they must run.

use std::net::SocketAddr;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use url::Url;

/// The variable that names the PostgreSQL server tests may use.
pub const POSTGRES_URL_VAR: &str = "COURIER_TEST_POSTGRES_URL";

/// The server URL for PostgreSQL tests, or None when they should skip. Panics when `CI` is
/// `true` and the variable is unset, so CI never passes without running them.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but {POSTGRES_URL_VAR} is not set: the PostgreSQL tests must run in CI")
        }
        _ => {
            // Once per test binary, and past libtest's capture of `eprintln!` (which would hide
            // it in a passing run): the notice is the point.
            static NOTICE: std::sync::Once = std::sync::Once::new();
            NOTICE.call_once(|| {
                use std::io::Write;
                let notice = format!("\nskipping PostgreSQL tests: set {POSTGRES_URL_VAR}\n");
                let _ = std::io::stderr().write_all(notice.as_bytes());
            });
            None
        }
    }
}

/// A database of its own for one test, dropped with this value.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database on the server of [`postgres_url`], or returns None when
    /// PostgreSQL tests skip.
    pub async fn create() -> Option<Self> {
        let admin_url = postgres_url()?;
        Some(Self::create_on(&admin_url).await)
    }

    /// Creates an empty database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> Self {
        let name = format!("courier_t_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let mut url = Url::parse(admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not a URL: {e}"));
        url.set_path(&name);
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    /// The `database_url` of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address of the PostgreSQL server, for a [`TcpProxy`] in front of it.
    pub fn server_addr(&self) -> SocketAddr {
        let url = Url::parse(&self.url).expect("a URL");
        let host = match url.host_str() {
            None | Some("localhost") => "127.0.0.1",
            Some(host) => host,
        };
        let port = url.port().unwrap_or(5432);
        format!("{host}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} needs an IP address host: {e}"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or during a panic), where blocking on async code
        // is not allowed: drop the database from a thread with a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(AssertSqlSafe(drop))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// The state of a [`TcpProxy`]'s link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow.
    Up,
    /// Every connection is closed and new ones are closed at once: the server went away.
    Cut,
    /// Connections stay open but no byte moves, now or later: a dead network path.
    Blackhole,
}

/// A TCP proxy in front of a server (PostgreSQL), whose link a test sets. It stops, closing
/// every connection, when dropped.
pub struct TcpProxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    _stop: DropGuard,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (link, _) = watch::channel(Link::Up);
        let stop = CancellationToken::new();
        let (accepting_link, accepting_stop) = (link.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = accepting_stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => continue,
                    },
                };
                tokio::spawn(relay(
                    client,
                    upstream,
                    accepting_link.subscribe(),
                    accepting_stop.clone(),
                ));
            }
        });
        Self {
            addr,
            link,
            _stop: stop.drop_guard(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with this proxy as its host and port.
    pub fn url_for(&self, url: &str) -> String {
        let mut url = Url::parse(url).expect("a URL");
        url.set_host(Some(&self.addr.ip().to_string()))
            .expect("a host");
        url.set_port(Some(self.addr.port())).expect("a port");
        url.to_string()
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut link: watch::Receiver<Link>,
    stop: CancellationToken,
) {
    let state = *link.borrow_and_update();
    match state {
        Link::Cut => return,
        Link::Blackhole => return hold(client, None, stop).await,
        Link::Up => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let blackhole = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        changed = link.wait_for(|link| *link != Link::Up) => {
            changed.is_ok_and(|link| *link == Link::Blackhole)
        }
        () = stop.cancelled() => false,
    };
    if blackhole {
        hold(client, Some(server), stop).await;
    }
}

/// Keeps sockets open without moving a byte until the proxy stops.
async fn hold(client: TcpStream, server: Option<TcpStream>, stop: CancellationToken) {
    stop.cancelled().await;
    drop((client, server));
}
