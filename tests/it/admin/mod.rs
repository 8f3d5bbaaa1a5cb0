//! Admin: subscriptions, ListMessages and ListDeliveries with paging, Redrive, Resolve and
//! GetStats, one file per topic.

mod dead_letters;
mod listings;
mod resolve;
mod stats;
mod subscriptions;
