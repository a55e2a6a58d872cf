from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ("shape", "dtype")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class MetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyMetadata(_message.Message):
    __slots__ = ("protocol_version", "observation_spec", "action_dim", "chunk_size", "fps", "policy_type", "extra_json", "max_batch_size", "max_message_bytes", "prefix_length", "prefix_modes")
    class ObservationSpecEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FeatureSpec
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FeatureSpec, _Mapping]] = ...) -> None: ...
    class PrefixModesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    ACTION_DIM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    POLICY_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PREFIX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_MODES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    observation_spec: _containers.MessageMap[str, FeatureSpec]
    action_dim: int
    chunk_size: int
    fps: float
    policy_type: str
    extra_json: str
    max_batch_size: int
    max_message_bytes: int
    prefix_length: int
    prefix_modes: _containers.ScalarMap[str, int]
    def __init__(self, protocol_version: _Optional[int] = ..., observation_spec: _Optional[_Mapping[str, FeatureSpec]] = ..., action_dim: _Optional[int] = ..., chunk_size: _Optional[int] = ..., fps: _Optional[float] = ..., policy_type: _Optional[str] = ..., extra_json: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., prefix_length: _Optional[int] = ..., prefix_modes: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ObservationRequest(_message.Message):
    __slots__ = ("session_id", "episode_id", "timestep", "observation", "task", "action_context", "estimated_delay", "request_id", "must_go", "prefix_mode")
    class ObservationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTEP_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ACTION_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_DELAY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MUST_GO_FIELD_NUMBER: _ClassVar[int]
    PREFIX_MODE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    episode_id: int
    timestep: int
    observation: _containers.MessageMap[str, Tensor]
    task: str
    action_context: Tensor
    estimated_delay: int
    request_id: int
    must_go: bool
    prefix_mode: str
    def __init__(self, session_id: _Optional[str] = ..., episode_id: _Optional[int] = ..., timestep: _Optional[int] = ..., observation: _Optional[_Mapping[str, Tensor]] = ..., task: _Optional[str] = ..., action_context: _Optional[_Union[Tensor, _Mapping]] = ..., estimated_delay: _Optional[int] = ..., request_id: _Optional[int] = ..., must_go: _Optional[bool] = ..., prefix_mode: _Optional[str] = ...) -> None: ...

class ServerTimings(_message.Message):
    __slots__ = ("queue_wait_ms", "preprocess_ms", "model_ms", "postprocess_ms", "batch_size")
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue_wait_ms: float
    preprocess_ms: float
    model_ms: float
    postprocess_ms: float
    batch_size: int
    def __init__(self, queue_wait_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., model_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ChunkReply(_message.Message):
    __slots__ = ("session_id", "episode_id", "first_timestep", "actions", "timings", "request_id", "error")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIMESTEP_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    episode_id: int
    first_timestep: int
    actions: Tensor
    timings: ServerTimings
    request_id: int
    error: Status
    def __init__(self, session_id: _Optional[str] = ..., episode_id: _Optional[int] = ..., first_timestep: _Optional[int] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., timings: _Optional[_Union[ServerTimings, _Mapping]] = ..., request_id: _Optional[int] = ..., error: _Optional[_Union[Status, _Mapping]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("session_id", "episode_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    episode_id: int
    def __init__(self, session_id: _Optional[str] = ..., episode_id: _Optional[int] = ...) -> None: ...

class ResetReply(_message.Message):
    __slots__ = ("session_id", "episode_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    episode_id: int
    def __init__(self, session_id: _Optional[str] = ..., episode_id: _Optional[int] = ...) -> None: ...
