import datetime

from courier_client.v1 import common_pb2 as _common_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrepareRequest(_message.Message):
    __slots__ = ("producer", "topic", "key", "payload", "headers", "check_after", "deliver_after", "ordering_key")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    CHECK_AFTER_FIELD_NUMBER: _ClassVar[int]
    DELIVER_AFTER_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    producer: str
    topic: str
    key: str
    payload: bytes
    headers: _containers.ScalarMap[str, str]
    check_after: _duration_pb2.Duration
    deliver_after: _duration_pb2.Duration
    ordering_key: str
    def __init__(self, producer: _Optional[str] = ..., topic: _Optional[str] = ..., key: _Optional[str] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., check_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., deliver_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ordering_key: _Optional[str] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("message_id", "created", "state")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    created: bool
    state: _common_pb2.MessageState
    def __init__(self, message_id: _Optional[str] = ..., created: bool = ..., state: _Optional[_Union[_common_pb2.MessageState, str]] = ...) -> None: ...

class ConfirmRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.MessageRef
    def __init__(self, message: _Optional[_Union[_common_pb2.MessageRef, _Mapping]] = ...) -> None: ...

class ConfirmResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.MessageState
    def __init__(self, state: _Optional[_Union[_common_pb2.MessageState, str]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.MessageRef
    def __init__(self, message: _Optional[_Union[_common_pb2.MessageRef, _Mapping]] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.MessageState
    def __init__(self, state: _Optional[_Union[_common_pb2.MessageState, str]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("producer", "topic", "key", "payload", "headers", "deliver_after", "ordering_key")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    DELIVER_AFTER_FIELD_NUMBER: _ClassVar[int]
    ORDERING_KEY_FIELD_NUMBER: _ClassVar[int]
    producer: str
    topic: str
    key: str
    payload: bytes
    headers: _containers.ScalarMap[str, str]
    deliver_after: _duration_pb2.Duration
    ordering_key: str
    def __init__(self, producer: _Optional[str] = ..., topic: _Optional[str] = ..., key: _Optional[str] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., deliver_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ordering_key: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("message_id", "created", "state")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    created: bool
    state: _common_pb2.MessageState
    def __init__(self, message_id: _Optional[str] = ..., created: bool = ..., state: _Optional[_Union[_common_pb2.MessageState, str]] = ...) -> None: ...

class CheckStatusRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.MessageRef
    def __init__(self, message: _Optional[_Union[_common_pb2.MessageRef, _Mapping]] = ...) -> None: ...

class CheckStatusResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _common_pb2.Message
    def __init__(self, message: _Optional[_Union[_common_pb2.Message, _Mapping]] = ...) -> None: ...

class RegisterCheckerRequest(_message.Message):
    __slots__ = ("producer", "endpoint", "timeout")
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    producer: str
    endpoint: str
    timeout: _duration_pb2.Duration
    def __init__(self, producer: _Optional[str] = ..., endpoint: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RegisterCheckerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
