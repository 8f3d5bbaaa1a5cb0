//! The producer side: Prepare, the caller's local transaction, then Confirm or Cancel.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt as _;
use tonic::Status;
use tracing::warn;

use crate::connection::CourierChannel;
use crate::message::OutgoingMessage;
use crate::proto::producer_client::ProducerClient;
use crate::proto::{
    self, CancelRequest, CheckStatusRequest, ConfirmRequest, Decision, Message, MessageState,
    RegisterCheckerRequest,
};

/// A producer named `name` (the `producer` of its messages and the scope its token needs).
#[derive(Debug, Clone)]
pub struct Producer {
    name: String,
    client: ProducerClient<CourierChannel>,
}

/// What Prepare or Publish answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The id Courier gave the message.
    pub message_id: String,
    /// False when a message with this producer and key already existed (same content).
    pub created: bool,
    /// Its state now.
    pub state: MessageState,
}

/// A message sent by [`Producer::send`], with what the local transaction returned.
#[derive(Debug)]
pub struct Sent<T> {
    /// The id Courier gave the message.
    pub message_id: String,
    /// What the local transaction returned.
    pub value: T,
    /// Whether Confirm went through now, or was left to check-back (Courier could not be
    /// reached after the local commit; the Checker answers COMMIT when asked).
    pub confirmation: Confirmation,
}

/// How the message of a committed local transaction got confirmed.
#[derive(Debug)]
pub enum Confirmation {
    /// Confirm answered: the message is CONFIRMED.
    Confirmed,
    /// Confirm failed; Courier will ask the Checker (COMMIT) after `check_after`.
    LeftToCheckBack(Status),
}

/// Why [`Producer::send`] (or [`Outbox::send_in_transaction`](crate::Outbox::send_in_transaction))
/// sent nothing.
#[derive(Debug, thiserror::Error)]
pub enum SendError<E> {
    /// Prepare failed: nothing happened, locally or in Courier.
    #[error("Courier refused or did not answer Prepare: {}", .0.message())]
    Prepare(#[source] Status),
    /// A message with this producer and key already existed, so the local transaction did not
    /// run: an earlier send of the same key got as far as Prepare. Its state says how it ended
    /// (PREPARED: check-back decides it from the Checker).
    #[error("a message with this key already exists ({message_id}, {})", .state.as_str_name())]
    Duplicate {
        /// The existing message.
        message_id: String,
        /// Its state.
        state: MessageState,
    },
    /// The local transaction failed; the message was cancelled (or, if Courier could not be
    /// reached, is left to check-back, which finds no commit).
    #[error("the local transaction failed")]
    Local(#[source] E),
}

impl Producer {
    /// A producer over a channel from [`Connection`](crate::Connection).
    pub fn new(channel: CourierChannel, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            client: ProducerClient::new(channel),
        }
    }

    /// The producer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The generated client, for calls this type does not wrap.
    pub fn client(&self) -> ProducerClient<CourierChannel> {
        self.client.clone()
    }

    /// Stores the message as PREPARED (not delivered until [`confirm`](Self::confirm)).
    pub async fn prepare(&self, message: OutgoingMessage) -> Result<Accepted, Status> {
        let response = self
            .client()
            .prepare(message.prepare_request(&self.name))
            .await?
            .into_inner();
        Ok(Accepted {
            state: response.state(),
            message_id: response.message_id,
            created: response.created,
        })
    }

    /// Prepare and Confirm in one call, for messages that follow no local transaction.
    pub async fn publish(&self, message: OutgoingMessage) -> Result<Accepted, Status> {
        let response = self
            .client()
            .publish(message.publish_request(&self.name))
            .await?
            .into_inner();
        Ok(Accepted {
            state: response.state(),
            message_id: response.message_id,
            created: response.created,
        })
    }

    /// Makes a prepared message CONFIRMED. Idempotent.
    pub async fn confirm(&self, message_id: &str) -> Result<MessageState, Status> {
        let request = ConfirmRequest {
            message: proto::by_id(message_id),
        };
        Ok(self.client().confirm(request).await?.into_inner().state())
    }

    /// Makes a prepared message CANCELLED. Idempotent.
    pub async fn cancel(&self, message_id: &str) -> Result<MessageState, Status> {
        let request = CancelRequest {
            message: proto::by_id(message_id),
        };
        Ok(self.client().cancel(request).await?.into_inner().state())
    }

    /// Where a message stands: its state, outcome and deliveries.
    pub async fn status(&self, message_id: &str) -> Result<Message, Status> {
        let request = CheckStatusRequest {
            message: proto::by_id(message_id),
        };
        self.client()
            .check_status(request)
            .await?
            .into_inner()
            .message
            .ok_or_else(|| Status::internal("CheckStatus answered no message"))
    }

    /// Registers `endpoint` (`http://host:port` Courier can reach) as this producer's Checker,
    /// each call limited to `timeout` (the server's default, 5 s, when None).
    pub async fn register_checker(
        &self,
        endpoint: &str,
        timeout: Option<Duration>,
    ) -> Result<(), Status> {
        let request = RegisterCheckerRequest {
            producer: self.name.clone(),
            endpoint: endpoint.to_owned(),
            timeout: timeout.map(proto::duration),
        };
        self.client().register_checker(request).await?;
        Ok(())
    }

    /// The two-phase send: Prepare, run `local` with the message id, then Confirm when it
    /// returns `Ok`, or Cancel when it returns `Err` or panics (the panic goes on after the
    /// Cancel). If this process dies in between, Courier asks the producer's Checker.
    ///
    /// `local` must commit its work before it returns `Ok`, and must not have committed when it
    /// returns `Err`. With a database, [`Outbox::send_in_transaction`](crate::Outbox::send_in_transaction)
    /// does that for you and gives the Checker its answer.
    pub async fn send<T, E, F>(
        &self,
        message: OutgoingMessage,
        local: F,
    ) -> Result<Sent<T>, SendError<E>>
    where
        F: AsyncFnOnce(String) -> Result<T, E>,
    {
        self.send_resolving(message, local, async |_| Some(Decision::Rollback))
            .await
    }

    /// [`send`](Self::send), where `after_failure` says what became of a failed local
    /// transaction (None: unknown, left to check-back).
    pub(crate) async fn send_resolving<T, E, F, R>(
        &self,
        message: OutgoingMessage,
        local: F,
        after_failure: R,
    ) -> Result<Sent<T>, SendError<E>>
    where
        F: AsyncFnOnce(String) -> Result<T, E>,
        R: AsyncFnOnce(String) -> Option<Decision>,
    {
        let accepted = self.prepare(message).await.map_err(SendError::Prepare)?;
        if !accepted.created {
            return Err(SendError::Duplicate {
                message_id: accepted.message_id,
                state: accepted.state,
            });
        }
        let message_id = accepted.message_id;
        let outcome = AssertUnwindSafe(local(message_id.clone()))
            .catch_unwind()
            .await;
        match outcome {
            Ok(Ok(value)) => {
                let confirmation = match self.confirm(&message_id).await {
                    Ok(_) => Confirmation::Confirmed,
                    Err(status) => {
                        warn!(%message_id, error = status.message(), "confirm failed after the local commit; check-back will confirm");
                        Confirmation::LeftToCheckBack(status)
                    }
                };
                Ok(Sent {
                    message_id,
                    value,
                    confirmation,
                })
            }
            Ok(Err(error)) => {
                self.settle_failure(&message_id, after_failure).await;
                Err(SendError::Local(error))
            }
            Err(panic) => {
                self.settle_failure(&message_id, after_failure).await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Cancels (or, if the local commit happened after all, confirms) the message of a failed
    /// local transaction; when that cannot be said or done now, check-back decides.
    async fn settle_failure<R>(&self, message_id: &str, after_failure: R)
    where
        R: AsyncFnOnce(String) -> Option<Decision>,
    {
        let answer = match after_failure(message_id.to_owned()).await {
            Some(Decision::Commit) => self.confirm(message_id).await,
            Some(Decision::Rollback) => self.cancel(message_id).await,
            _ => return,
        };
        if let Err(status) = answer {
            warn!(%message_id, error = status.message(), "could not settle the message of a failed local transaction; check-back will");
        }
    }
}
