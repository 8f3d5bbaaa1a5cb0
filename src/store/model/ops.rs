//! The operations a sequence is made of, and how proptest generates (and shrinks) them.
//! Operations name subscriptions, lanes, messages, receipts and claims by small indexes that
//! the runner resolves against what exists at that step, so any shrunk sequence still runs.

use proptest::prelude::*;
use proptest::sample::Index;

/// How many subscriptions (`s0`, `s1`, ...) and lanes (`k0`, `k1`, ...) sequences use.
pub const SUBSCRIPTIONS: usize = 2;
pub const LANES: usize = 2;

/// Picks one of the things handed out so far (receipts, claims, messages): mostly among the
/// last few, the ones still in play, sometimes any (older: stale receipts and claims).
#[derive(Debug, Clone)]
pub struct Pick {
    pub recent: bool,
    pub index: Index,
}

impl Pick {
    /// The position it picks among `len` items, if there are any.
    pub fn position(&self, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let window = if self.recent { len.min(3) } else { len };
        Some(len - window + self.index.index(window))
    }

    pub fn of<T: Clone>(&self, items: &[T]) -> Option<T> {
        Some(items[self.position(items.len())?].clone())
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    (prop::bool::weighted(0.7), any::<Index>()).prop_map(|(recent, index)| Pick { recent, index })
}

/// A check-back verdict to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Commit,
    Rollback,
    RetryLater,
    GiveUp,
}

#[derive(Debug, Clone)]
pub enum Op {
    CreateSubscription {
        sub: usize,
        ordered: bool,
        skip_dead_heads: bool,
        max_attempts: u32,
    },
    /// Changes a subscription's attempts, and its dead-head policy to the other one with
    /// `switch_dead_head`; `flip_ordered` also asks to change whether it is ordered, which is
    /// refused.
    UpdateSubscription {
        sub: usize,
        switch_dead_head: bool,
        max_attempts: u32,
        flip_ordered: bool,
    },
    /// Prepare (`publish` false) or Publish a new message, in lane `lane` if any.
    Insert {
        publish: bool,
        lane: Option<usize>,
        delayed: bool,
    },
    /// Prepare or Publish again under the key of an earlier message, with the same content
    /// (answered with the retained message) or other content (refused), or after retention
    /// freed the key (a new message).
    Repeat {
        message: Pick,
        same: bool,
        publish: bool,
    },
    /// Confirm or Cancel (or an operator's Resolve: the same store call), by id or by
    /// producer key.
    Decide {
        message: Pick,
        commit: bool,
        by_key: bool,
    },
    Lease {
        sub: usize,
        max: u32,
    },
    /// Acks receipts handed out so far: the latest, stale ones, repeats.
    Ack {
        receipts: Vec<Pick>,
    },
    Nack {
        receipt: Pick,
        delay_ms: Option<u64>,
    },
    ExtendLease {
        receipt: Pick,
        secs: u64,
    },
    Reject {
        receipt: Pick,
    },
    /// A failed push of the receipt's lease.
    FailDelivery {
        receipt: Pick,
    },
    /// Moves the test clock on.
    Advance {
        millis: u64,
    },
    ExpireLeases,
    /// Redrive (or, with `discard`, DiscardDeadLetters) every DEAD delivery of the
    /// subscription, or only that of one message.
    EndDead {
        sub: usize,
        message: Option<Pick>,
        discard: bool,
    },
    ClaimChecks {
        limit: u32,
    },
    /// Records a verdict for a check claimed so far (the latest or a stale one).
    RecordCheck {
        claim: Pick,
        verdict: Verdict,
    },
    /// Retention: deletes messages final for at least `keep_ms`, at most `limit` of them.
    DeleteFinal {
        keep_ms: u64,
        limit: u32,
    },
    /// Reopens the store on the same database and goes on with the new one.
    Restart,
}

fn create() -> impl Strategy<Value = Op> {
    // Mostly ordered, and few attempts: lanes and dead letters are where the rules are subtle.
    (
        0..SUBSCRIPTIONS,
        prop::bool::weighted(0.75),
        any::<bool>(),
        1..=2u32,
    )
        .prop_map(
            |(sub, ordered, skip_dead_heads, max_attempts)| Op::CreateSubscription {
                sub,
                ordered,
                skip_dead_heads,
                max_attempts,
            },
        )
}

fn advance() -> impl Strategy<Value = Op> {
    // Around the durations that matter: the backoffs (1 s, 2 s, 4 s with 20 % jitter), the
    // delivery delay (3 s), the ack deadline and first check (10 s), the hold (30 s).
    prop::sample::select(vec![1, 500, 1_000, 2_500, 3_000, 10_000, 30_000, 120_000])
        .prop_map(|millis| Op::Advance { millis })
}

fn op() -> impl Strategy<Value = Op> {
    let lane = prop::option::weighted(0.7, 0..LANES);
    prop_oneof![
        1 => create(),
        10 => (prop::bool::weighted(0.7), lane, prop::bool::weighted(0.2)).prop_map(|(publish, lane, delayed)| {
            Op::Insert { publish, lane, delayed }
        }),
        2 => (0..SUBSCRIPTIONS, prop::bool::weighted(0.8), 1..=3u32, prop::bool::weighted(0.1))
            .prop_map(|(sub, switch_dead_head, max_attempts, flip_ordered)| {
                Op::UpdateSubscription { sub, switch_dead_head, max_attempts, flip_ordered }
            }
        ),
        1 => (pick(), prop::bool::weighted(0.7), any::<bool>())
            .prop_map(|(message, same, publish)| Op::Repeat { message, same, publish }),
        3 => (pick(), prop::bool::weighted(0.7), prop::bool::weighted(0.3))
            .prop_map(|(message, commit, by_key)| Op::Decide { message, commit, by_key }),
        8 => (0..SUBSCRIPTIONS, 1..=3u32).prop_map(|(sub, max)| Op::Lease { sub, max }),
        4 => prop::collection::vec(pick(), 1..=3).prop_map(|receipts| Op::Ack { receipts }),
        4 => (pick(), prop::option::of(prop::sample::select(vec![0, 2_000])))
            .prop_map(|(receipt, delay_ms)| Op::Nack { receipt, delay_ms }),
        1 => (pick(), prop::sample::select(vec![1, 20]))
            .prop_map(|(receipt, secs)| Op::ExtendLease { receipt, secs }),
        3 => pick().prop_map(|receipt| Op::Reject { receipt }),
        1 => pick().prop_map(|receipt| Op::FailDelivery { receipt }),
        4 => advance(),
        2 => Just(Op::ExpireLeases),
        2 => (0..SUBSCRIPTIONS, prop::option::of(pick()), any::<bool>())
            .prop_map(|(sub, message, discard)| Op::EndDead { sub, message, discard }),
        2 => (1..=3u32).prop_map(|limit| Op::ClaimChecks { limit }),
        2 => (pick(), prop::sample::select(vec![
            Verdict::Commit, Verdict::Rollback, Verdict::RetryLater, Verdict::GiveUp,
        ])).prop_map(|(claim, verdict)| Op::RecordCheck { claim, verdict }),
        1 => (prop::sample::select(vec![0, 5_000]), prop::sample::select(vec![1, 100]))
            .prop_map(|(keep_ms, limit)| Op::DeleteFinal { keep_ms, limit }),
        1 => Just(Op::Restart),
    ]
}

/// A sequence: a subscription or two first (so most steps have something to act on), then up
/// to `steps` operations of every kind.
pub fn sequence(steps: usize) -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(create(), 1..=2),
        prop::collection::vec(op(), 1..=steps),
    )
        .prop_map(|(mut first, rest)| {
            first.extend(rest);
            first
        })
}
