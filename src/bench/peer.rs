//! `courier bench --peer amqp://…`: the same workload against RabbitMQ right after Courier's
//! run, and both reports side by side with Courier / RabbitMQ ratios.
//!
//! The AMQP client itself ([`super::amqp`]) is compiled only with the `rabbitmq` feature, so
//! the server binary people deploy links none; without it `--peer` says how to get it.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::report::Report;
use super::stats::Summary;
use super::{BenchError, BenchOptions, Mode};

/// The RabbitMQ a bench compares Courier with.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    pub queue: PeerQueue,
}

/// The kind of durable queue the peer declares (a fresh one per run, deleted after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PeerQueue {
    /// Replicated Raft log, fsync'd before a publisher confirm (RabbitMQ's recommended kind).
    #[default]
    Quorum,
    /// Classic durable queue with persistent messages.
    Classic,
}

impl PeerQueue {
    /// The `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quorum => "quorum",
            Self::Classic => "classic",
        }
    }

    /// How the report names the backend.
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    pub(super) fn backend(self) -> &'static str {
        match self {
            Self::Quorum => "rabbitmq-quorum",
            Self::Classic => "rabbitmq-classic",
        }
    }
}

/// Runs `options` against Courier, then the same workload against `peer`.
pub async fn run_side_by_side(options: BenchOptions, peer: Peer) -> Result<SideBySide, BenchError> {
    refuse_store_only(&options)?;
    run_both(options, peer).await
}

/// Runs the comparison `rounds` times in turn (Courier, RabbitMQ, Courier, RabbitMQ, …), so
/// both sides meet the machine's slower and faster minutes alike, and reports every round
/// and the medians.
pub async fn run_rounds(
    options: BenchOptions,
    peer: Peer,
    rounds: u32,
) -> Result<Rounds, BenchError> {
    refuse_store_only(&options)?;
    if rounds == 0 {
        return Err(BenchError::Options("--rounds must be at least 1".into()));
    }
    let mut runs = Vec::with_capacity(rounds as usize);
    for round in 1..=rounds {
        if rounds > 1 {
            eprintln!("bench: side by side, round {round} of {rounds}");
        }
        runs.push(run_both(options.clone(), peer.clone()).await?);
    }
    Ok(Rounds { runs })
}

fn refuse_store_only(options: &BenchOptions) -> Result<(), BenchError> {
    if options.store_only {
        return Err(BenchError::Options(
            "--peer compares what clients see over the network; it does not take --store-only"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(feature = "rabbitmq")]
async fn run_both(options: BenchOptions, peer: Peer) -> Result<SideBySide, BenchError> {
    super::validate(&options)?;
    // A wrong URL fails now, not after Courier's run.
    super::amqp::check_reachable(&peer).await?;
    let courier = super::run(options.clone()).await?;
    let peer_report = super::amqp::run(&options, &peer).await?;
    Ok(SideBySide {
        courier,
        peer: peer_report,
    })
}

#[cfg(not(feature = "rabbitmq"))]
async fn run_both(_options: BenchOptions, _peer: Peer) -> Result<SideBySide, BenchError> {
    Err(BenchError::Options(
        "this courier was built without the RabbitMQ client: build it with \
         `cargo build --release --features rabbitmq` to use --peer"
            .into(),
    ))
}

/// Both reports of a `--peer` run.
#[derive(Debug, Clone)]
pub struct SideBySide {
    pub courier: Report,
    pub peer: Report,
}

/// One line of the comparison: its name in the table and in the JSON ratios, and how to read
/// it off a report.
struct Row {
    name: &'static str,
    key: &'static str,
    value: fn(&Report) -> Option<f64>,
    /// Decimals shown.
    precision: usize,
}

fn p50(summary: Option<Summary>) -> Option<f64> {
    summary.map(|s| s.p50_ms)
}

fn p99(summary: Option<Summary>) -> Option<f64> {
    summary.map(|s| s.p99_ms)
}

const ROWS: [Row; 10] = [
    Row {
        name: "throughput (msg/s)",
        key: "msgs_per_sec",
        value: |r| Some(r.msgs_per_sec()),
        precision: 0,
    },
    Row {
        name: "receive p50 (ms)",
        key: "receive_p50",
        value: |r| p50(r.outcome().receive),
        precision: 2,
    },
    Row {
        name: "receive p99 (ms)",
        key: "receive_p99",
        value: |r| p99(r.outcome().receive),
        precision: 2,
    },
    Row {
        name: "send p50 (ms)",
        key: "send_p50",
        value: |r| p50(r.outcome().send),
        precision: 2,
    },
    Row {
        name: "send p99 (ms)",
        key: "send_p99",
        value: |r| p99(r.outcome().send),
        precision: 2,
    },
    Row {
        name: "to delivery p50 (ms)",
        key: "delivery_p50",
        value: |r| p50(r.outcome().delivery),
        precision: 2,
    },
    Row {
        name: "to delivery p99 (ms)",
        key: "delivery_p99",
        value: |r| p99(r.outcome().delivery),
        precision: 2,
    },
    Row {
        name: "server CPU/msg (ms)",
        key: "server_cpu_per_message",
        value: |r| r.server_cpu_ms_per_message(),
        precision: 3,
    },
    Row {
        name: "server CPU (cores)",
        key: "server_cores",
        value: |r| {
            let sampled = r.sampled();
            sampled
                .server_cpu
                .filter(|_| sampled.seconds > 0.0)
                .map(|cpu| cpu / sampled.seconds)
        },
        precision: 2,
    },
    Row {
        name: "server RSS max (MiB)",
        key: "server_rss",
        value: |r| r.sampled().max_rss.map(|b| b as f64 / (1024.0 * 1024.0)),
        precision: 1,
    },
];

fn ratio(courier: Option<f64>, peer: Option<f64>) -> Option<f64> {
    courier
        .zip(peer)
        .filter(|(_, peer)| *peer > 0.0)
        .map(|(courier, peer)| courier / peer)
}

impl SideBySide {
    /// Courier's figure over RabbitMQ's for each row, by the row's JSON name.
    fn ratios(&self) -> Value {
        let mut ratios = serde_json::Map::new();
        for row in &ROWS {
            let value = ratio((row.value)(&self.courier), (row.value)(&self.peer));
            ratios.insert(row.key.into(), rounded(value));
        }
        Value::Object(ratios)
    }

    /// The last line: Courier's JSON object, the peer's, and the ratios.
    pub fn json(&self) -> Value {
        json!({
            "courier": self.courier.json(),
            "peer": self.peer.json(),
            "ratio": self.ratios(),
        })
    }

    /// What each side did, in one line.
    fn headline(&self) -> String {
        let (courier, peer) = (self.courier.backend(), self.peer.backend());
        let fan_out = match self.courier.options().subscriptions {
            1 => String::new(),
            count => format!(
                "; every message goes to {count} subscriptions (RabbitMQ: a fanout exchange to \
                 {count} queues)"
            ),
        };
        if let Some(backlog) = self.courier.options().backlog {
            return format!(
                "side by side: Courier {courier} and RabbitMQ ({peer} queue) each drain a \
                 backlog of {backlog} messages (Receive and Ack; deliveries and `multiple` \
                 acks){fan_out}"
            );
        }
        let courier_does = match self.courier.options().mode {
            Mode::PrepareConfirm => "Prepare + Confirm (two durable writes)",
            Mode::Publish => "Publish (one durable write)",
        };
        format!(
            "side by side: Courier {courier} does {courier_does}; RabbitMQ does one publish with \
             a publisher confirm ({peer} queue){fan_out}"
        )
    }

    /// Both reports, the comparison table, then one JSON object on the last line.
    pub fn render(&self) -> String {
        let mut text = self.courier.render_text();
        text.push('\n');
        text.push_str(&self.peer.render_text());
        text.push('\n');
        let _ = writeln!(text, "{}", self.headline());
        text.push_str(&self.table());
        let _ = writeln!(text, "{}", self.json());
        text
    }

    /// Each row's Courier figure, RabbitMQ's and their ratio.
    fn table(&self) -> String {
        render_table(ROWS.iter().map(|row| {
            let (courier, peer) = ((row.value)(&self.courier), (row.value)(&self.peer));
            (row, courier, peer, ratio(courier, peer))
        }))
    }
}

/// The comparison table: one line per row (its name, Courier's figure, RabbitMQ's, the
/// ratio), then how to read the ratio.
fn render_table<'r>(
    lines: impl Iterator<Item = (&'r Row, Option<f64>, Option<f64>, Option<f64>)>,
) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "  {:<22} {:>12} {:>12} {:>10}",
        "", "courier", "rabbitmq", "ratio"
    );
    for (row, courier, peer, ratio) in lines {
        let shown = |value: Option<f64>| {
            value.map_or_else(|| "-".to_owned(), |v| format!("{v:.*}", row.precision))
        };
        let ratio = ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        let _ = writeln!(
            text,
            "  {:<22} {:>12} {:>12} {:>10}",
            row.name,
            shown(courier),
            shown(peer),
            ratio
        );
    }
    let _ = writeln!(
        text,
        "  (ratio = Courier / RabbitMQ: above 1 is better for throughput, below 1 for the rest; \
         send = a producer's wait per message)"
    );
    text
}

/// The side-by-side runs of `--peer … --rounds N`, in the order they ran.
#[derive(Debug, Clone)]
pub struct Rounds {
    runs: Vec<SideBySide>,
}

/// The median of some figures (the mean of the middle two for an even count); `None` when
/// there are none.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

impl Rounds {
    /// For one row: the median of Courier's figures, of RabbitMQ's, and of the rounds'
    /// ratios (each ratio taken within its round, whose two sides ran one right after the
    /// other on the same machine).
    fn medians(&self, row: &Row) -> (Option<f64>, Option<f64>, Option<f64>) {
        let of = |figure: &dyn Fn(&SideBySide) -> Option<f64>| {
            median(self.runs.iter().filter_map(figure).collect())
        };
        (
            of(&|run| (row.value)(&run.courier)),
            of(&|run| (row.value)(&run.peer)),
            of(&|run| ratio((row.value)(&run.courier), (row.value)(&run.peer))),
        )
    }

    /// One round: as [`SideBySide::json`]. Several: every round's, and the medians.
    pub fn json(&self) -> Value {
        if let [only] = self.runs.as_slice() {
            return only.json();
        }
        let mut courier = serde_json::Map::new();
        let mut peer = serde_json::Map::new();
        let mut ratios = serde_json::Map::new();
        for row in &ROWS {
            let (c, p, r) = self.medians(row);
            courier.insert(row.key.into(), rounded(c));
            peer.insert(row.key.into(), rounded(p));
            ratios.insert(row.key.into(), rounded(r));
        }
        json!({
            "rounds": self.runs.iter().map(SideBySide::json).collect::<Vec<_>>(),
            "median": {"courier": courier, "peer": peer, "ratio": ratios},
        })
    }

    /// One round: as [`SideBySide::render`]. Several: each round's table, the table of the
    /// medians, then one JSON object on the last line.
    pub fn render(&self) -> String {
        let [first, ..] = self.runs.as_slice() else {
            return String::new();
        };
        if self.runs.len() == 1 {
            return first.render();
        }
        let count = self.runs.len();
        let mut text = String::new();
        let _ = writeln!(text, "{}", first.headline());
        for (round, run) in self.runs.iter().enumerate() {
            let _ = writeln!(text, "round {} of {count}", round + 1);
            text.push_str(&run.table());
        }
        let _ = writeln!(
            text,
            "median of {count} rounds (each ratio within its round, then the median of those)"
        );
        text.push_str(&render_table(ROWS.iter().map(|row| {
            let (courier, peer, ratio) = self.medians(row);
            (row, courier, peer, ratio)
        })));
        let _ = writeln!(text, "{}", self.json());
        text
    }
}

/// A figure as the JSON shows it: three decimals, or null.
fn rounded(value: Option<f64>) -> Value {
    json!(value.map(|v| (v * 1000.0).round() / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peer_runs_refuse_store_only() {
        let peer = Peer {
            url: "amqp://127.0.0.1:1/%2f".into(),
            queue: PeerQueue::Quorum,
        };
        let options = BenchOptions {
            store_only: true,
            ..BenchOptions::default()
        };
        let refused = run_side_by_side(options, peer).await;
        assert!(
            matches!(refused, Err(BenchError::Options(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn medians_take_the_middle_figure_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![0.9]), Some(0.9));
        assert_eq!(median(vec![1.02, 0.86, 0.95]), Some(0.95));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[tokio::test]
    async fn rounds_refuse_store_only_and_zero() {
        let peer = || Peer {
            url: "amqp://127.0.0.1:1/%2f".into(),
            queue: PeerQueue::Quorum,
        };
        let store_only = BenchOptions {
            store_only: true,
            ..BenchOptions::default()
        };
        let refused = run_rounds(store_only, peer(), 3).await;
        assert!(
            matches!(refused, Err(BenchError::Options(_))),
            "{refused:?}"
        );
        let refused = run_rounds(BenchOptions::default(), peer(), 0).await;
        assert!(
            matches!(refused, Err(BenchError::Options(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn ratios_need_both_figures() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
