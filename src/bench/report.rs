//! The bench's report: readable lines, then one JSON object on the last line.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::BenchOptions;
use super::server::Sampled;
use super::stats::Summary;
use super::workload::Outcome;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone)]
pub struct Report {
    backend: &'static str,
    path: &'static str,
    options: BenchOptions,
    outcome: Outcome,
    server: String,
    peak_rss: Option<u64>,
    sampled: Sampled,
    commits: Option<(u64, u64, &'static str)>,
    notes: Vec<String>,
}

impl Report {
    pub(super) fn new(options: &BenchOptions, backend: &'static str) -> Self {
        Self {
            backend,
            path: if options.store_only { "store" } else { "grpc" },
            options: options.clone(),
            outcome: Outcome::default(),
            server: String::new(),
            peak_rss: None,
            sampled: Sampled::default(),
            commits: None,
            notes: Vec::new(),
        }
    }

    pub(super) fn note(&mut self, note: String) {
        eprintln!("bench: {note}");
        self.notes.push(note);
    }

    pub(super) fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    pub(super) fn set_sampled(&mut self, sampled: Sampled) {
        self.sampled = sampled;
    }

    pub(super) fn set_server(&mut self, server: String, peak_rss: Option<u64>) {
        self.server = server;
        self.peak_rss = peak_rss;
    }

    /// How the workload reached the server, when not as `--store-only` implies: `amqp`.
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    pub(super) fn set_path(&mut self, path: &'static str) {
        self.path = path;
    }

    pub(super) fn set_commits(&mut self, commits: u64, messages: u64, source: &'static str) {
        self.commits = Some((commits, messages, source));
    }

    pub fn msgs_per_sec(&self) -> f64 {
        if self.outcome.seconds > 0.0 {
            self.outcome.messages as f64 / self.outcome.seconds
        } else {
            0.0
        }
    }

    /// The latency the JSON line's `p50_ms` and `p99_ms` give: confirm-to-delivery for a
    /// flow, Receive for a backlog.
    fn headline(&self) -> Option<Summary> {
        if self.outcome.backlog {
            self.outcome.receive
        } else {
            self.outcome.delivery
        }
    }

    pub(super) fn options(&self) -> &BenchOptions {
        &self.options
    }

    pub(super) fn backend(&self) -> &'static str {
        self.backend
    }

    pub(super) fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub(super) fn sampled(&self) -> &Sampled {
        &self.sampled
    }

    /// The server's CPU time (user + system) per delivered message, in milliseconds: what a
    /// machine with few cores runs out of first.
    pub fn server_cpu_ms_per_message(&self) -> Option<f64> {
        let messages = self.outcome.messages;
        self.sampled
            .server_cpu
            .filter(|_| messages > 0)
            .map(|cpu| cpu * 1000.0 / messages as f64)
    }

    pub fn commits_per_message(&self) -> Option<f64> {
        self.commits
            .filter(|(_, messages, _)| *messages > 0)
            .map(|(commits, messages, _)| commits as f64 / messages as f64)
    }

    /// The last line: one JSON object.
    pub fn json(&self) -> Value {
        let options = &self.options;
        let summary = |summary: Option<Summary>| {
            summary.map_or(Value::Null, |s| {
                json!({"count": s.count, "p50_ms": round(s.p50_ms), "p99_ms": round(s.p99_ms), "max_ms": round(s.max_ms)})
            })
        };
        let headline = self.headline();
        let mode = if self.outcome.backlog {
            "backlog"
        } else {
            options.mode.as_str()
        };
        // In publish mode the first call is Publish; its latency goes under its own name.
        let (first_call, first) = match options.mode {
            super::Mode::Publish => ("publish", self.outcome.prepare),
            super::Mode::PrepareConfirm => ("prepare", self.outcome.prepare),
        };
        let mut latency = serde_json::Map::new();
        latency.insert(first_call.into(), summary(first));
        for (name, value) in [
            ("confirm", self.outcome.confirm),
            ("send", self.outcome.send),
            ("confirm_to_delivery", self.outcome.delivery),
            ("receive", self.outcome.receive),
            ("ack", self.outcome.ack),
        ] {
            latency.insert(name.into(), summary(value));
        }
        json!({
            "messages": self.outcome.messages,
            "subscriptions": options.subscriptions,
            "deliveries": self.outcome.deliveries,
            "seconds": round(self.outcome.seconds),
            "msgs_per_sec": self.msgs_per_sec().round(),
            "p50_ms": headline.map(|s| round(s.p50_ms)),
            "p99_ms": headline.map(|s| round(s.p99_ms)),
            "commits_per_message": self.commits_per_message().map(round),
            "backend": self.backend,
            "path": self.path,
            "mode": mode,
            "ordered_keys": options.ordered_keys,
            "producers": options.producers,
            "consumers": options.consumers,
            "payload_bytes": options.payload_bytes,
            "batch": options.batch,
            "connections": options.connections,
            "rate": options.rate,
            "commits": self.commits.map(|(commits, _, _)| commits),
            "server_peak_rss_mib": self.peak_rss.map(|b| round(b as f64 / MIB)),
            "server_max_rss_sampled_mib": self.sampled.max_rss.map(|b| round(b as f64 / MIB)),
            "server_cpu_seconds": self.sampled.server_cpu.map(round),
            "server_cpu_ms_per_message": self.server_cpu_ms_per_message().map(round),
            "bench_cpu_seconds": self.sampled.bench_cpu.map(round),
            "duplicates": self.outcome.duplicates,
            "ack_failures": self.outcome.ack_failures,
            "latency_ms": latency,
        })
    }

    /// The whole report, the JSON object last.
    pub fn render(&self) -> String {
        let mut text = self.render_text();
        let _ = writeln!(text, "{}", self.json());
        text
    }

    /// The readable lines, without the JSON object.
    pub fn render_text(&self) -> String {
        let options = &self.options;
        let outcome = &self.outcome;
        let mut text = String::new();
        let mode = if outcome.backlog {
            "backlog (Receive + Ack of pending messages)"
        } else {
            options.mode.as_str()
        };
        let rate = options.rate.map_or_else(
            || "unpaced".to_owned(),
            |rate| format!("paced at {rate} msg/s"),
        );
        let _ = writeln!(
            text,
            "courier bench: backend {}, {} path, {mode}; {} producers, {} consumers, {} B payloads, batches of {}, {} connections, {rate}",
            self.backend,
            self.path,
            options.producers,
            options.consumers,
            options.payload_bytes,
            options.batch,
            options.connections,
        );
        if options.subscriptions > 1 {
            let _ = writeln!(
                text,
                "  fan-out: every message to {} subscriptions, {} consumers each",
                options.subscriptions, options.consumers
            );
        }
        if let Some(keys) = options.ordered_keys {
            let _ = writeln!(
                text,
                "  ordered subscription: messages spread over {keys} ordering keys (lanes)"
            );
        }
        for note in &self.notes {
            let _ = writeln!(text, "  {note}");
        }
        let span = if outcome.backlog {
            "first Receive to last Ack"
        } else {
            "first Prepare or Publish to last Ack"
        };
        let _ = writeln!(
            text,
            "throughput: {} messages in {:.2} s = {:.0} msg/s ({span})",
            outcome.messages,
            outcome.seconds,
            self.msgs_per_sec()
        );
        if options.subscriptions > 1 {
            let _ = writeln!(
                text,
                "  {} deliveries = {:.0} deliveries/s",
                outcome.deliveries,
                self.msgs_per_sec() * options.subscriptions as f64
            );
        }
        let _ = writeln!(
            text,
            "latency (ms)             count      p50      p99      max"
        );
        let first = if options.mode == super::Mode::Publish {
            "publish"
        } else {
            "prepare"
        };
        let rows = [
            (first, outcome.prepare),
            ("confirm", outcome.confirm),
            ("confirm-to-delivery", outcome.delivery),
            ("receive", outcome.receive),
            ("ack", outcome.ack),
        ];
        for (name, summary) in rows {
            if let Some(s) = summary {
                let _ = writeln!(
                    text,
                    "  {name:<20} {:>8} {:>8.2} {:>8.2} {:>8.2}",
                    s.count, s.p50_ms, s.p99_ms, s.max_ms
                );
            }
        }
        let _ = writeln!(
            text,
            "receives: {} ({} empty); duplicates {}; acks not OK {}",
            outcome.receives, outcome.empty_receives, outcome.duplicates, outcome.ack_failures
        );
        match self.commits {
            Some((commits, messages, source)) => {
                let _ = writeln!(
                    text,
                    "write transactions: {commits} for {messages} messages = {:.3} per message ({source})",
                    self.commits_per_message().unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(text, "write transactions: unknown for this server");
            }
        }
        let _ = writeln!(text, "server: {}", self.server);
        let mib = |bytes: Option<u64>| {
            bytes.map_or_else(
                || "unknown".to_owned(),
                |b| format!("{:.1} MiB", b as f64 / MIB),
            )
        };
        let _ = writeln!(
            text,
            "server RSS: peak {} (VmHWM), highest sampled during the run {}",
            mib(self.peak_rss),
            mib(self.sampled.max_rss)
        );
        if self.sampled.seconds > 0.0 {
            let cores = |cpu: Option<f64>| {
                cpu.map_or_else(
                    || "unknown".to_owned(),
                    |cpu| format!("{cpu:.1} s ({:.2} cores)", cpu / self.sampled.seconds),
                )
            };
            let _ = writeln!(
                text,
                "CPU during the run: server {}, bench {}",
                cores(self.sampled.server_cpu),
                cores(self.sampled.bench_cpu)
            );
        }
        if let Some(per_message) = self.server_cpu_ms_per_message() {
            let _ = writeln!(
                text,
                "server CPU per message: {per_message:.3} ms (user + system)"
            );
        }
        text
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
