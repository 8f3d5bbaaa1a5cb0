import datetime

from courier_client.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _common_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_common_pb2.Subscription, _Mapping]] = ...) -> None: ...

class GetSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Subscription]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[_common_pb2.Subscription, _Mapping]]] = ...) -> None: ...

class UpdateSubscriptionRequest(_message.Message):
    __slots__ = ("subscription",)
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: _common_pb2.Subscription
    def __init__(self, subscription: _Optional[_Union[_common_pb2.Subscription, _Mapping]] = ...) -> None: ...

class DeleteSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteSubscriptionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("topic", "producer", "state", "outcome", "page_size", "page_token")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    topic: str
    producer: str
    state: _common_pb2.MessageState
    outcome: _common_pb2.MessageOutcome
    page_size: int
    page_token: str
    def __init__(self, topic: _Optional[str] = ..., producer: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.MessageState, str]] = ..., outcome: _Optional[_Union[_common_pb2.MessageOutcome, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("subscription", "state", "page_size", "page_token", "blocking_only")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_ONLY_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    state: _common_pb2.DeliveryState
    page_size: int
    page_token: str
    blocking_only: bool
    def __init__(self, subscription: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.DeliveryState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., blocking_only: bool = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[_common_pb2.DeliveryStatus]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[_common_pb2.DeliveryStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeadLetterFilter(_message.Message):
    __slots__ = ("error_contains", "dead_after", "dead_before", "key", "ordering_key")
    ERROR_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    DEAD_AFTER_FIELD_NUMBER: _ClassVar[int]
    DEAD_BEFORE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    error_contains: str
    dead_after: _timestamp_pb2.Timestamp
    dead_before: _timestamp_pb2.Timestamp
    key: str
    ordering_key: str
    def __init__(self, error_contains: _Optional[str] = ..., dead_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dead_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[str] = ..., ordering_key: _Optional[str] = ...) -> None: ...

class RedriveRequest(_message.Message):
    __slots__ = ("subscription", "message_ids", "filter", "dry_run", "rate")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: DeadLetterFilter
    dry_run: bool
    rate: float
    def __init__(self, subscription: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[DeadLetterFilter, _Mapping]] = ..., dry_run: bool = ..., rate: _Optional[float] = ...) -> None: ...

class RedriveResponse(_message.Message):
    __slots__ = ("redriven", "matched")
    REDRIVEN_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    redriven: int
    matched: int
    def __init__(self, redriven: _Optional[int] = ..., matched: _Optional[int] = ...) -> None: ...

class DiscardDeadLettersRequest(_message.Message):
    __slots__ = ("subscription", "message_ids", "filter", "dry_run")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    filter: DeadLetterFilter
    dry_run: bool
    def __init__(self, subscription: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., filter: _Optional[_Union[DeadLetterFilter, _Mapping]] = ..., dry_run: bool = ...) -> None: ...

class DiscardDeadLettersResponse(_message.Message):
    __slots__ = ("discarded", "matched")
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    discarded: int
    matched: int
    def __init__(self, discarded: _Optional[int] = ..., matched: _Optional[int] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("message", "decision")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.MessageRef
    decision: _common_pb2.Decision
    def __init__(self, message: _Optional[_Union[_common_pb2.MessageRef, _Mapping]] = ..., decision: _Optional[_Union[_common_pb2.Decision, str]] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.MessageState
    def __init__(self, state: _Optional[_Union[_common_pb2.MessageState, str]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopicStats(_message.Message):
    __slots__ = ("topic", "prepared", "confirmed", "cancelled", "unresolved", "unrouted")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    UNRESOLVED_FIELD_NUMBER: _ClassVar[int]
    UNROUTED_FIELD_NUMBER: _ClassVar[int]
    topic: str
    prepared: int
    confirmed: int
    cancelled: int
    unresolved: int
    unrouted: int
    def __init__(self, topic: _Optional[str] = ..., prepared: _Optional[int] = ..., confirmed: _Optional[int] = ..., cancelled: _Optional[int] = ..., unresolved: _Optional[int] = ..., unrouted: _Optional[int] = ...) -> None: ...

class SubscriptionStats(_message.Message):
    __slots__ = ("subscription", "topic", "pending", "leased", "acked", "dead", "oldest_pending_age", "discarded", "blocked_lanes")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    DEAD_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_LANES_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    topic: str
    pending: int
    leased: int
    acked: int
    dead: int
    oldest_pending_age: _duration_pb2.Duration
    discarded: int
    blocked_lanes: int
    def __init__(self, subscription: _Optional[str] = ..., topic: _Optional[str] = ..., pending: _Optional[int] = ..., leased: _Optional[int] = ..., acked: _Optional[int] = ..., dead: _Optional[int] = ..., oldest_pending_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., discarded: _Optional[int] = ..., blocked_lanes: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("topics", "subscriptions", "unrouted_confirms")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    UNROUTED_CONFIRMS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[TopicStats]
    subscriptions: _containers.RepeatedCompositeFieldContainer[SubscriptionStats]
    unrouted_confirms: int
    def __init__(self, topics: _Optional[_Iterable[_Union[TopicStats, _Mapping]]] = ..., subscriptions: _Optional[_Iterable[_Union[SubscriptionStats, _Mapping]]] = ..., unrouted_confirms: _Optional[int] = ...) -> None: ...
