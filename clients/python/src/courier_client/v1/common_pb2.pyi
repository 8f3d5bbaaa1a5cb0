import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATE_UNSPECIFIED: _ClassVar[MessageState]
    MESSAGE_STATE_PREPARED: _ClassVar[MessageState]
    MESSAGE_STATE_CONFIRMED: _ClassVar[MessageState]
    MESSAGE_STATE_CANCELLED: _ClassVar[MessageState]
    MESSAGE_STATE_UNRESOLVED: _ClassVar[MessageState]

class MessageOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_OUTCOME_UNSPECIFIED: _ClassVar[MessageOutcome]
    MESSAGE_OUTCOME_PREPARED: _ClassVar[MessageOutcome]
    MESSAGE_OUTCOME_CANCELLED: _ClassVar[MessageOutcome]
    MESSAGE_OUTCOME_UNRESOLVED: _ClassVar[MessageOutcome]
    MESSAGE_OUTCOME_DELIVERING: _ClassVar[MessageOutcome]
    MESSAGE_OUTCOME_DELIVERED: _ClassVar[MessageOutcome]
    MESSAGE_OUTCOME_DEAD_LETTERED: _ClassVar[MessageOutcome]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_LEASED: _ClassVar[DeliveryState]
    DELIVERY_STATE_ACKED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DEAD: _ClassVar[DeliveryState]
    DELIVERY_STATE_DISCARDED: _ClassVar[DeliveryState]

class DeadHead(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEAD_HEAD_UNSPECIFIED: _ClassVar[DeadHead]
    DEAD_HEAD_BLOCK: _ClassVar[DeadHead]
    DEAD_HEAD_SKIP: _ClassVar[DeadHead]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_COMMIT: _ClassVar[Decision]
    DECISION_ROLLBACK: _ClassVar[Decision]
    DECISION_UNKNOWN: _ClassVar[Decision]
MESSAGE_STATE_UNSPECIFIED: MessageState
MESSAGE_STATE_PREPARED: MessageState
MESSAGE_STATE_CONFIRMED: MessageState
MESSAGE_STATE_CANCELLED: MessageState
MESSAGE_STATE_UNRESOLVED: MessageState
MESSAGE_OUTCOME_UNSPECIFIED: MessageOutcome
MESSAGE_OUTCOME_PREPARED: MessageOutcome
MESSAGE_OUTCOME_CANCELLED: MessageOutcome
MESSAGE_OUTCOME_UNRESOLVED: MessageOutcome
MESSAGE_OUTCOME_DELIVERING: MessageOutcome
MESSAGE_OUTCOME_DELIVERED: MessageOutcome
MESSAGE_OUTCOME_DEAD_LETTERED: MessageOutcome
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_LEASED: DeliveryState
DELIVERY_STATE_ACKED: DeliveryState
DELIVERY_STATE_DEAD: DeliveryState
DELIVERY_STATE_DISCARDED: DeliveryState
DEAD_HEAD_UNSPECIFIED: DeadHead
DEAD_HEAD_BLOCK: DeadHead
DEAD_HEAD_SKIP: DeadHead
DECISION_UNSPECIFIED: Decision
DECISION_COMMIT: Decision
DECISION_ROLLBACK: Decision
DECISION_UNKNOWN: Decision

class ProducerKey(_message.Message):
    __slots__ = ("producer", "key")
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    producer: str
    key: str
    def __init__(self, producer: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class MessageRef(_message.Message):
    __slots__ = ("message_id", "producer_key")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_KEY_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    producer_key: ProducerKey
    def __init__(self, message_id: _Optional[str] = ..., producer_key: _Optional[_Union[ProducerKey, _Mapping]] = ...) -> None: ...

class DeliveryStatus(_message.Message):
    __slots__ = ("subscription", "message_id", "state", "attempts", "next_attempt_at", "lease_expires_at", "last_error", "ordering_key")
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    subscription: str
    message_id: str
    state: DeliveryState
    attempts: int
    next_attempt_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    last_error: str
    ordering_key: str
    def __init__(self, subscription: _Optional[str] = ..., message_id: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., attempts: _Optional[int] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., ordering_key: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("message_id", "producer", "topic", "key", "headers", "state", "outcome", "created_at", "updated_at", "check_attempts", "next_check_at", "deliveries", "last_check_error", "payload_bytes", "ordering_key")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHECK_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CHECK_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECK_ERROR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    producer: str
    topic: str
    key: str
    headers: _containers.ScalarMap[str, str]
    state: MessageState
    outcome: MessageOutcome
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    check_attempts: int
    next_check_at: _timestamp_pb2.Timestamp
    deliveries: _containers.RepeatedCompositeFieldContainer[DeliveryStatus]
    last_check_error: str
    payload_bytes: int
    ordering_key: str
    def __init__(self, message_id: _Optional[str] = ..., producer: _Optional[str] = ..., topic: _Optional[str] = ..., key: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[MessageState, str]] = ..., outcome: _Optional[_Union[MessageOutcome, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., check_attempts: _Optional[int] = ..., next_check_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deliveries: _Optional[_Iterable[_Union[DeliveryStatus, _Mapping]]] = ..., last_check_error: _Optional[str] = ..., payload_bytes: _Optional[int] = ..., ordering_key: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("receipt", "message_id", "subscription", "topic", "producer", "key", "payload", "headers", "attempt", "published_at", "lease_expires_at", "ordering_key", "traceparent", "tracestate")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    receipt: str
    message_id: str
    subscription: str
    topic: str
    producer: str
    key: str
    payload: bytes
    headers: _containers.ScalarMap[str, str]
    attempt: int
    published_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    ordering_key: str
    traceparent: str
    tracestate: str
    def __init__(self, receipt: _Optional[str] = ..., message_id: _Optional[str] = ..., subscription: _Optional[str] = ..., topic: _Optional[str] = ..., producer: _Optional[str] = ..., key: _Optional[str] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., attempt: _Optional[int] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ordering_key: _Optional[str] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "max_backoff", "multiplier")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    max_backoff: _duration_pb2.Duration
    multiplier: float
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("name", "topic", "ack_deadline", "retry_policy", "push_endpoint", "created_at", "ordered", "dead_head")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    PUSH_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ORDERED_FIELD_NUMBER: _ClassVar[int]
    DEAD_HEAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    topic: str
    ack_deadline: _duration_pb2.Duration
    retry_policy: RetryPolicy
    push_endpoint: str
    created_at: _timestamp_pb2.Timestamp
    ordered: bool
    dead_head: DeadHead
    def __init__(self, name: _Optional[str] = ..., topic: _Optional[str] = ..., ack_deadline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., push_endpoint: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ordered: bool = ..., dead_head: _Optional[_Union[DeadHead, str]] = ...) -> None: ...
