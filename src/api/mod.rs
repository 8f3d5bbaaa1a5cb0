//! The gRPC transport: thin tonic handlers for Producer, Consumer and Admin. Each handler
//! decodes and validates through [`crate::convert`], calls the [`Store`], and maps errors through
//! [`status`]; no business rule lives here.

pub mod admission;
pub mod auth;
pub mod dead_letters;
pub mod status;
pub mod trace;

mod admin;
mod answers;
mod consumer;
pub(crate) mod endpoints;
mod producer;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::StoreOutages;
use crate::lease_ahead::LeaseAhead;
use crate::proto::admin_server::AdminServer;
use crate::proto::consumer_server::ConsumerServer;
use crate::proto::producer_server::ProducerServer;
use crate::store::Store;
use crate::wakeups::Wakeups;

pub use admin::AdminService;
pub use answers::{Answers, RequestLimit};
pub use consumer::ConsumerService;
pub use producer::ProducerService;

/// What every handler needs; shared by the three services.
pub struct ApiContext {
    pub store: Arc<dyn Store>,
    pub wakeups: Wakeups,
    /// Batches leased ahead on a backlog, for the next Receive.
    pub lease_ahead: LeaseAhead,
    pub config: Arc<Config>,
    /// Cancelled when the server begins to shut down, so long polls return early.
    pub shutdown: CancellationToken,
    /// Where an answer that found the store away is reported, for the health task.
    pub outages: StoreOutages,
}

/// Slack above the payload and header limits for the rest of a request (names, key, framing).
const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;
/// tonic's own default, kept as the floor so small limits do not make Admin calls fail.
const DEFAULT_MAX_DECODING_BYTES: usize = 4 * 1024 * 1024;

/// The three Courier services, ready to add to a tonic server.
pub struct Services {
    pub producer: Answers<ProducerServer<ProducerService>>,
    pub consumer: Answers<ConsumerServer<ConsumerService>>,
    pub admin: Answers<AdminServer<AdminService>>,
}

impl Services {
    pub fn new(context: ApiContext) -> Self {
        // A payload at the configured limit must reach the handler, which answers
        // RESOURCE_EXHAUSTED naming the limit when it is over; tonic's 4 MiB default would cut
        // larger configured limits off first.
        let limits = &context.config.limits;
        let producer_limit = RequestLimit {
            bytes: (limits.max_payload_bytes + limits.max_header_bytes + REQUEST_OVERHEAD_BYTES)
                .max(DEFAULT_MAX_DECODING_BYTES),
            limit: "limits.max_payload_bytes",
            hint: Some(format!(
                "limits.max_payload_bytes allows {} bytes of payload",
                limits.max_payload_bytes
            )),
        };
        // Consumer and Admin requests carry no payload; tonic's default is plenty.
        let fixed_limit = RequestLimit {
            bytes: DEFAULT_MAX_DECODING_BYTES,
            limit: "request_bytes",
            hint: None,
        };
        let outages = context.outages.clone();
        let context = Arc::new(context);
        Self {
            producer: Answers::new(
                ProducerServer::new(ProducerService::new(context.clone()))
                    .max_decoding_message_size(producer_limit.bytes),
                producer_limit,
                outages.clone(),
            ),
            consumer: Answers::new(
                ConsumerServer::new(ConsumerService::new(context.clone()))
                    .max_decoding_message_size(fixed_limit.bytes),
                fixed_limit.clone(),
                outages.clone(),
            ),
            admin: Answers::new(
                AdminServer::new(AdminService::new(context))
                    .max_decoding_message_size(fixed_limit.bytes),
                fixed_limit,
                outages,
            ),
        }
    }
}
