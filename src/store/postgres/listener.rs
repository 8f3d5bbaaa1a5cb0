//! Turns other replicas' notifications into local wake-ups. One task per store LISTENs on
//! Courier's channels (`notify`): a subscription whose deliveries became due wakes its long
//! polls and this replica's push loop; new deadlines wake the lease-expiry and check-back
//! loops; a subscription change marks this replica's copy of the subscriptions stale. The same
//! connection announces this replica's due deliveries to the others (`announce`), and ignores
//! its own announcements when they come back.
//! Notifications are not stored: any sent while the connection is down are lost, so after
//! every (re)connect everyone is woken once to look for themselves, and the copy of the
//! subscriptions is read again. A lost notification costs latency, never a delivery.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::announce::{DueAnnouncer, send_due};
use super::notify::{CHANNELS, Notification};
use crate::store::subscription_cache::SubscriptionCache;
use crate::wakeups::Wakeups;

/// How long the connection may stay quiet before the listener checks it still works. A
/// connection whose network path died may not error until TCP gives up, minutes later.
const QUIET_CHECK: Duration = Duration::from_secs(10);

/// The listener's connection's name in `pg_stat_activity` (the pool's are "courier").
pub const APPLICATION_NAME: &str = "courier listener";

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How the listener talks with its store.
pub struct Signals {
    /// Set while the listener is subscribed.
    pub listening: watch::Sender<bool>,
    /// Poked when a store call found the database away: check the connection now.
    pub check_now: Arc<Notify>,
    /// Told when the subscriptions changed, or may have while nobody listened.
    pub subscriptions: Arc<SubscriptionCache>,
    /// This replica's due deliveries, to announce to the others.
    pub due: Arc<DueAnnouncer>,
}

pub async fn run(
    options: PgConnectOptions,
    connect_timeout: Duration,
    wakeups: Wakeups,
    signals: Signals,
    shutdown: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = connect(&options, connect_timeout) => connected,
        };
        let error = match connected {
            Ok(mut listener) => {
                if failures > 0 {
                    tracing::info!("listening for other replicas' wake-ups again");
                }
                failures = 0;
                signals.subscriptions.changed();
                signals.listening.send_replace(true);
                wakeups.notify_all();
                let lost = listen(
                    &mut listener,
                    &wakeups,
                    connect_timeout,
                    &signals,
                    &shutdown,
                )
                .await;
                signals.listening.send_replace(false);
                match lost {
                    None => return,
                    Some(error) => error,
                }
            }
            Err(error) => error,
        };
        failures += 1;
        let pause = backoff(failures);
        tracing::warn!(
            error = %error,
            failures,
            retry_in = ?pause,
            "lost the LISTEN connection; wake-ups from other replicas are delayed until it is back"
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// A listener on a fresh pool of one. The pool only lets sqlx reconnect by itself after a
/// dropped connection; it is new each time because a listener dropped on a dead network path
/// may hold its old connection (and so the old pool's only slot) until TCP gives up.
async fn connect(options: &PgConnectOptions, timeout: Duration) -> Result<PgListener, String> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .connect_lazy_with(options.clone().application_name(APPLICATION_NAME));
    let connecting = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen_all(CHANNELS).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    bounded(timeout, "no connection", connecting).await
}

/// `work`, given at most `timeout`: on a dead network path it would wait for TCP to give up,
/// minutes later. The error in words; `missing` says what did not come in time.
async fn bounded<T>(
    timeout: Duration,
    missing: &str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("{missing} within {timeout:?}")),
    }
}

/// Dispatches notifications until shutdown (None) or until the connection fails (the error).
async fn listen(
    listener: &mut PgListener,
    wakeups: &Wakeups,
    check_timeout: Duration,
    signals: &Signals,
    shutdown: &CancellationToken,
) -> Option<String> {
    let mut own_pid = match backend_pid(listener, check_timeout).await {
        Ok(pid) => pid,
        Err(error) => return Some(error),
    };
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return None,
            () = signals.check_now.notified() => None,
            names = signals.due.next() => {
                let sent = send_due(&mut *listener, &names);
                match bounded(check_timeout, "no answer to an announcement", sent).await {
                    Ok(()) => continue,
                    Err(error) => return Some(error),
                }
            }
            received = tokio::time::timeout(QUIET_CHECK, listener.try_recv()) => Some(received),
        };
        match received {
            Some(Ok(Ok(Some(notification)))) => {
                if notification.process_id() == own_pid {
                    continue;
                }
                let heard = Notification::parse(notification.channel(), notification.payload());
                if let Some(heard) = heard {
                    dispatch(heard, wakeups, &signals.subscriptions);
                }
            }
            // sqlx noticed the connection drop and connected again; whatever was sent in
            // between is lost.
            Some(Ok(Ok(None))) => {
                signals.subscriptions.changed();
                wakeups.notify_all();
                own_pid = match backend_pid(listener, check_timeout).await {
                    Ok(pid) => pid,
                    Err(error) => return Some(error),
                };
            }
            Some(Ok(Err(error))) => return Some(error.to_string()),
            // Quiet for a while, or a store call found the database away.
            None | Some(Err(_)) => {
                let check = sqlx::query("SELECT 1").execute(&mut *listener);
                if let Err(error) = bounded(check_timeout, "no answer to a check", check).await {
                    return Some(error);
                }
            }
        }
    }
}

/// The server process of the listener's connection: notifications it sent carry it.
async fn backend_pid(listener: &mut PgListener, timeout: Duration) -> Result<u32, String> {
    let asked = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&mut *listener);
    let pid = bounded(timeout, "no answer to the process id query", asked).await?;
    Ok(pid.unsigned_abs())
}

fn dispatch(heard: Notification, wakeups: &Wakeups, subscriptions: &SubscriptionCache) {
    match heard {
        Notification::Due(subscription) => {
            wakeups.notify_subscription(subscription.as_str());
            wakeups.notify_push();
        }
        Notification::DeadlinesChanged => {
            wakeups.leases().wake();
            wakeups.checks().wake();
        }
        Notification::SubscriptionsChanged => subscriptions.changed(),
    }
}

fn backoff(failures: u32) -> Duration {
    let millis = 100u64.saturating_mul(1 << failures.min(8));
    Duration::from_millis(millis).min(MAX_BACKOFF)
}
