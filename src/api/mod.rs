//! The gRPC transport: thin tonic handlers for Producer, Consumer and Admin. Each handler
//! decodes and validates through [`convert`], calls the [`Store`], and maps errors through
//! [`status`]; no business rule lives here.

pub mod convert;
pub mod status;

mod admin;
mod consumer;
mod producer;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::proto::admin_server::AdminServer;
use crate::proto::consumer_server::ConsumerServer;
use crate::proto::producer_server::ProducerServer;
use crate::store::Store;
use crate::wakeups::Wakeups;

pub use admin::AdminService;
pub use consumer::ConsumerService;
pub use producer::ProducerService;

/// What every handler needs; shared by the three services.
pub struct ApiContext {
    pub store: Arc<dyn Store>,
    pub wakeups: Wakeups,
    pub config: Arc<Config>,
    /// Cancelled when the server begins to shut down, so long polls return early.
    pub shutdown: CancellationToken,
}

/// Slack above the payload and header limits for the rest of a request (names, key, framing).
const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;
/// tonic's own default, kept as the floor so small limits do not make Admin calls fail.
const DEFAULT_MAX_DECODING_BYTES: usize = 4 * 1024 * 1024;

/// The three Courier services, ready to add to a tonic server.
pub struct Services {
    pub producer: ProducerServer<ProducerService>,
    pub consumer: ConsumerServer<ConsumerService>,
    pub admin: AdminServer<AdminService>,
}

impl Services {
    pub fn new(context: ApiContext) -> Self {
        // A payload at the configured limit must reach the handler, which answers
        // RESOURCE_EXHAUSTED naming the limit when it is over; tonic's 4 MiB default would cut
        // larger configured limits off first.
        let max_request_bytes = (context.config.limits.max_payload_bytes
            + context.config.limits.max_header_bytes
            + REQUEST_OVERHEAD_BYTES)
            .max(DEFAULT_MAX_DECODING_BYTES);
        let context = Arc::new(context);
        Self {
            producer: ProducerServer::new(ProducerService::new(context.clone()))
                .max_decoding_message_size(max_request_bytes),
            consumer: ConsumerServer::new(ConsumerService::new(context.clone())),
            admin: AdminServer::new(AdminService::new(context)),
        }
    }
}
