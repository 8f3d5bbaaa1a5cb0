//! Admin: subscriptions, inspection, dead letters (Redrive, DiscardDeadLetters) and stuck
//! messages (Resolve).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::field::Empty;
use tracing::{debug, instrument};

use super::ApiContext;
use super::auth::Caller;
use super::{dead_letters, endpoints};
use crate::convert;
use crate::domain::Timestamp;
use crate::metrics;
use crate::proto::{self, admin_server::Admin};
use crate::store::StatsScope;
use crate::telemetry::{record, record_message};

pub struct AdminService {
    context: Arc<ApiContext>,
}

impl AdminService {
    pub(super) fn new(context: Arc<ApiContext>) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    #[instrument(skip_all, fields(subscription = Empty, topic = Empty))]
    async fn create_subscription(
        &self,
        request: Request<proto::CreateSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let subscription = convert::create_subscription(
            request.into_inner().subscription,
            &self.context.config.subscriptions,
        )?;
        if let Some(endpoint) = &subscription.push_endpoint {
            endpoints::must_be_allowed(
                "subscription.push_endpoint",
                endpoint,
                &self.context.config,
            )?;
        }
        record("subscription", &subscription.name);
        record("topic", &subscription.topic);
        let (subscription, created) = self.context.store.create_subscription(subscription).await?;
        if created {
            crate::audit!(
                caller,
                subscription = %subscription.name,
                topic = %subscription.topic,
                push_endpoint = subscription.push_endpoint.as_deref().unwrap_or(""),
                "subscription created"
            );
        }
        Ok(Response::new(convert::subscription(subscription)))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn get_subscription(
        &self,
        request: Request<proto::GetSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let name = convert::name("name", &request.into_inner().name)?;
        record("subscription", &name);
        let subscription = self.context.store.get_subscription(&name).await?;
        Ok(Response::new(convert::subscription(subscription)))
    }

    #[instrument(skip_all)]
    async fn list_subscriptions(
        &self,
        request: Request<proto::ListSubscriptionsRequest>,
    ) -> Result<Response<proto::ListSubscriptionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let topic = convert::topic_filter(&request.into_inner().topic)?;
        let subscriptions = self
            .context
            .store
            .list_subscriptions(topic.as_ref())
            .await?;
        Ok(Response::new(proto::ListSubscriptionsResponse {
            subscriptions: subscriptions
                .into_iter()
                .map(convert::subscription)
                .collect(),
        }))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn update_subscription(
        &self,
        request: Request<proto::UpdateSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let (spec, topic) = convert::update_subscription(
            request.into_inner().subscription,
            &self.context.config.subscriptions,
        )?;
        if let Some(endpoint) = &spec.push_endpoint {
            endpoints::must_be_allowed(
                "subscription.push_endpoint",
                endpoint,
                &self.context.config,
            )?;
        }
        record("subscription", &spec.name);
        // An update may leave the topic out (a different one is refused by the store); the
        // creation time is never the client's to set.
        let current = self.context.store.get_subscription(&spec.name).await?;
        let subscription = spec.with_topic(topic.unwrap_or(current.topic), current.created_at);
        let subscription = self.context.store.update_subscription(subscription).await?;
        crate::audit!(
            caller,
            subscription = %subscription.name,
            push_endpoint = subscription.push_endpoint.as_deref().unwrap_or(""),
            ack_deadline = ?subscription.ack_deadline,
            "subscription updated"
        );
        Ok(Response::new(convert::subscription(subscription)))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn delete_subscription(
        &self,
        request: Request<proto::DeleteSubscriptionRequest>,
    ) -> Result<Response<proto::DeleteSubscriptionResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let name = convert::name("name", &request.into_inner().name)?;
        record("subscription", &name);
        self.context.store.delete_subscription(&name).await?;
        crate::audit!(caller, subscription = %name, "subscription deleted");
        Ok(Response::new(proto::DeleteSubscriptionResponse {}))
    }

    #[instrument(skip_all)]
    async fn list_messages(
        &self,
        request: Request<proto::ListMessagesRequest>,
    ) -> Result<Response<proto::ListMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let query = convert::list_messages(request.into_inner())?;
        let page = self.context.store.list_messages(query).await?;
        Ok(Response::new(convert::list_messages_response(page)))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn list_deliveries(
        &self,
        request: Request<proto::ListDeliveriesRequest>,
    ) -> Result<Response<proto::ListDeliveriesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let query = convert::list_deliveries(request.into_inner())?;
        record("subscription", &query.subscription);
        // An unknown subscription is NOT_FOUND, not an empty page.
        self.context
            .store
            .get_subscription(&query.subscription)
            .await?;
        let page = self.context.store.list_deliveries(query).await?;
        Ok(Response::new(convert::list_deliveries_response(page)))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn redrive(
        &self,
        request: Request<proto::RedriveRequest>,
    ) -> Result<Response<proto::RedriveResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let action = convert::redrive(request.into_inner())?;
        record("subscription", &action.chosen.subscription);
        let store = &self.context.store;
        if action.dry_run {
            let matched = store.count_dead_letters(&action.chosen).await?;
            return Ok(Response::new(proto::RedriveResponse {
                redriven: 0,
                matched,
            }));
        }
        let redriven = dead_letters::redrive(store.as_ref(), &action, Timestamp::now()).await?;
        crate::audit!(
            caller,
            subscription = %action.chosen.subscription,
            chosen = %dead_letters::describe(&action.chosen),
            rate = action.rate,
            redriven,
            "dead deliveries redriven"
        );
        Ok(Response::new(proto::RedriveResponse {
            redriven,
            matched: redriven,
        }))
    }

    #[instrument(skip_all, fields(subscription = Empty))]
    async fn discard_dead_letters(
        &self,
        request: Request<proto::DiscardDeadLettersRequest>,
    ) -> Result<Response<proto::DiscardDeadLettersResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let action = convert::discard_dead_letters(request.into_inner())?;
        record("subscription", &action.chosen.subscription);
        let store = &self.context.store;
        if action.dry_run {
            let matched = store.count_dead_letters(&action.chosen).await?;
            return Ok(Response::new(proto::DiscardDeadLettersResponse {
                discarded: 0,
                matched,
            }));
        }
        let discarded = store
            .discard_dead_letters(&action.chosen, Timestamp::now())
            .await?;
        crate::audit!(
            caller,
            subscription = %action.chosen.subscription,
            chosen = %dead_letters::describe(&action.chosen),
            discarded,
            "dead deliveries discarded"
        );
        Ok(Response::new(proto::DiscardDeadLettersResponse {
            discarded,
            matched: discarded,
        }))
    }

    #[instrument(skip_all, fields(message_id = Empty, producer = Empty, key = Empty))]
    async fn resolve(
        &self,
        request: Request<proto::ResolveRequest>,
    ) -> Result<Response<proto::ResolveResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let (message, decision) = convert::resolve(request.into_inner())?;
        record_message(&message);
        let state = self
            .context
            .store
            .resolve(&message, decision, caller.name(), Timestamp::now())
            .await?;
        metrics::message_decided(state, metrics::Source::Operator);
        crate::audit!(caller, %message, ?decision, %state, "message resolved by an operator");
        Ok(Response::new(proto::ResolveResponse {
            state: convert::message_state(state).into(),
        }))
    }

    #[instrument(skip_all)]
    async fn get_stats(
        &self,
        request: Request<proto::GetStatsRequest>,
    ) -> Result<Response<proto::GetStatsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.authorize(None)?;
        let stats = self
            .context
            .store
            .stats(Timestamp::now(), StatsScope::Full)
            .await?;
        debug!(topics = stats.topics.len(), "stats served");
        Ok(Response::new(convert::stats(stats)))
    }
}
