from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Plan(_message.Message):
    __slots__ = ("precision", "intra_op_threads", "inter_op_threads", "execution_provider", "provider_options", "graph_optimization_level", "execution_mode", "metadata")
    class ProviderOptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    INTRA_OP_THREADS_FIELD_NUMBER: _ClassVar[int]
    INTER_OP_THREADS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_OPTIMIZATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_MODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    precision: str
    intra_op_threads: int
    inter_op_threads: int
    execution_provider: str
    provider_options: _containers.ScalarMap[str, str]
    graph_optimization_level: str
    execution_mode: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, precision: _Optional[str] = ..., intra_op_threads: _Optional[int] = ..., inter_op_threads: _Optional[int] = ..., execution_provider: _Optional[str] = ..., provider_options: _Optional[_Mapping[str, str]] = ..., graph_optimization_level: _Optional[str] = ..., execution_mode: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PushHeader(_message.Message):
    __slots__ = ("name", "version", "sha256", "size", "plan", "offset")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    size: int
    plan: Plan
    offset: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., offset: _Optional[int] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PushHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[PushHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class PushResult(_message.Message):
    __slots__ = ("name", "version", "sha256", "size", "bytes_received", "already_present")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    size: int
    bytes_received: int
    already_present: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., bytes_received: _Optional[int] = ..., already_present: bool = ...) -> None: ...

class UploadStatusRequest(_message.Message):
    __slots__ = ("sha256",)
    SHA256_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    def __init__(self, sha256: _Optional[str] = ...) -> None: ...

class UploadStatus(_message.Message):
    __slots__ = ("sha256", "complete", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    complete: bool
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., complete: bool = ..., offset: _Optional[int] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape", "dim_names", "value_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DIM_NAMES_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dim_names: _containers.RepeatedScalarFieldContainer[str]
    value_type: str
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dim_names: _Optional[_Iterable[str]] = ..., value_type: _Optional[str] = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("name", "version", "plan", "smoke_inputs", "inputs_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SMOKE_INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    plan: Plan
    smoke_inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    inputs_sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., smoke_inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., inputs_sha256: _Optional[str] = ...) -> None: ...

class ActivateResult(_message.Message):
    __slots__ = ("name", "version", "sha256", "previous_version", "load_ms", "smoke_ms", "memory_bytes", "inputs", "outputs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    SMOKE_MS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    previous_version: str
    load_ms: float
    smoke_ms: float
    memory_bytes: int
    inputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., previous_version: _Optional[str] = ..., load_ms: _Optional[float] = ..., smoke_ms: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("version", "sha256", "size", "created_unix", "plan", "active")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    version: str
    sha256: str
    size: int
    created_unix: float
    plan: Plan
    active: bool
    def __init__(self, version: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., created_unix: _Optional[float] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., active: bool = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "active_version", "versions", "loaded", "memory_bytes", "inputs", "outputs", "hook", "infer")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    INFER_FIELD_NUMBER: _ClassVar[int]
    name: str
    active_version: str
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    loaded: bool
    memory_bytes: int
    inputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    hook: HookRun
    infer: InferStats
    def __init__(self, name: _Optional[str] = ..., active_version: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., loaded: bool = ..., memory_bytes: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., hook: _Optional[_Union[HookRun, _Mapping]] = ..., infer: _Optional[_Union[InferStats, _Mapping]] = ...) -> None: ...

class HookRun(_message.Message):
    __slots__ = ("version", "ok", "error", "seconds", "finished_unix")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    version: str
    ok: bool
    error: str
    seconds: float
    finished_unix: float
    def __init__(self, version: _Optional[str] = ..., ok: bool = ..., error: _Optional[str] = ..., seconds: _Optional[float] = ..., finished_unix: _Optional[float] = ...) -> None: ...

class InferStats(_message.Message):
    __slots__ = ("requests", "errors", "bounds_ms", "counts", "sum_ms")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_MS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SUM_MS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    errors: int
    bounds_ms: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    sum_ms: float
    def __init__(self, requests: _Optional[int] = ..., errors: _Optional[int] = ..., bounds_ms: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., sum_ms: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelList(_message.Message):
    __slots__ = ("models", "store_bytes", "quota_bytes", "agent_rss_bytes", "runner_rss_bytes", "temperatures", "throttled")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    AGENT_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNNER_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    store_bytes: int
    quota_bytes: int
    agent_rss_bytes: int
    runner_rss_bytes: int
    temperatures: _containers.RepeatedCompositeFieldContainer[Temperature]
    throttled: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., store_bytes: _Optional[int] = ..., quota_bytes: _Optional[int] = ..., agent_rss_bytes: _Optional[int] = ..., runner_rss_bytes: _Optional[int] = ..., temperatures: _Optional[_Iterable[_Union[Temperature, _Mapping]]] = ..., throttled: _Optional[_Iterable[str]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("name", "version", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., force: bool = ...) -> None: ...

class DeleteResult(_message.Message):
    __slots__ = ("versions_removed", "bytes_freed")
    VERSIONS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    versions_removed: _containers.RepeatedScalarFieldContainer[str]
    bytes_freed: int
    def __init__(self, versions_removed: _Optional[_Iterable[str]] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data", "byte_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BYTE_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    byte_size: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., byte_size: _Optional[int] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("name", "version", "inputs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class InferPart(_message.Message):
    __slots__ = ("request", "result", "chunk")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    request: InferRequest
    result: InferResult
    chunk: bytes
    def __init__(self, request: _Optional[_Union[InferRequest, _Mapping]] = ..., result: _Optional[_Union[InferResult, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class InputShape(_message.Message):
    __slots__ = ("name", "dims")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class BenchmarkRequest(_message.Message):
    __slots__ = ("name", "version", "sha256", "plan", "inputs", "input_shapes", "warmup", "min_repeats", "max_repeats", "target_ci", "max_seconds", "inputs_sha256", "versus", "block_runs", "seed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    MIN_REPEATS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPEATS_FIELD_NUMBER: _ClassVar[int]
    TARGET_CI_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    VERSUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_RUNS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    plan: Plan
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    warmup: int
    min_repeats: int
    max_repeats: int
    target_ci: float
    max_seconds: float
    inputs_sha256: str
    versus: ModelRef
    block_runs: int
    seed: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., warmup: _Optional[int] = ..., min_repeats: _Optional[int] = ..., max_repeats: _Optional[int] = ..., target_ci: _Optional[float] = ..., max_seconds: _Optional[float] = ..., inputs_sha256: _Optional[str] = ..., versus: _Optional[_Union[ModelRef, _Mapping]] = ..., block_runs: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "sha256", "plan")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    plan: Plan
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("samples", "min_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "ci_low_ms", "ci_high_ms")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_MS_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_MS_FIELD_NUMBER: _ClassVar[int]
    samples: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    ci_low_ms: float
    ci_high_ms: float
    def __init__(self, samples: _Optional[int] = ..., min_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., ci_low_ms: _Optional[float] = ..., ci_high_ms: _Optional[float] = ...) -> None: ...

class Conditions(_message.Message):
    __slots__ = ("onnxruntime_version", "cpu_governor", "temperatures_before", "temperatures_after", "load_average", "usable_cores", "other_cpu_load", "throttled_before", "throttled_after")
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_AFTER_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    USABLE_CORES_FIELD_NUMBER: _ClassVar[int]
    OTHER_CPU_LOAD_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_AFTER_FIELD_NUMBER: _ClassVar[int]
    onnxruntime_version: str
    cpu_governor: str
    temperatures_before: _containers.RepeatedCompositeFieldContainer[Temperature]
    temperatures_after: _containers.RepeatedCompositeFieldContainer[Temperature]
    load_average: float
    usable_cores: int
    other_cpu_load: float
    throttled_before: int
    throttled_after: int
    def __init__(self, onnxruntime_version: _Optional[str] = ..., cpu_governor: _Optional[str] = ..., temperatures_before: _Optional[_Iterable[_Union[Temperature, _Mapping]]] = ..., temperatures_after: _Optional[_Iterable[_Union[Temperature, _Mapping]]] = ..., load_average: _Optional[float] = ..., usable_cores: _Optional[int] = ..., other_cpu_load: _Optional[float] = ..., throttled_before: _Optional[int] = ..., throttled_after: _Optional[int] = ...) -> None: ...

class BenchmarkProgress(_message.Message):
    __slots__ = ("repeats", "elapsed_s", "p50_ms", "ci_relative", "pairs", "ratio")
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    CI_RELATIVE_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    repeats: int
    elapsed_s: float
    p50_ms: float
    ci_relative: float
    pairs: int
    ratio: float
    def __init__(self, repeats: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., p50_ms: _Optional[float] = ..., ci_relative: _Optional[float] = ..., pairs: _Optional[int] = ..., ratio: _Optional[float] = ...) -> None: ...

class BenchmarkResult(_message.Message):
    __slots__ = ("sha256", "plan", "latency", "throughput", "session_load_ms", "first_inference_ms", "peak_rss_bytes", "conditions", "stop_reason", "input_shapes", "block_ms", "versus")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    SESSION_LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    STOP_REASON_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    VERSUS_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    plan: Plan
    latency: LatencyStats
    throughput: float
    session_load_ms: float
    first_inference_ms: float
    peak_rss_bytes: int
    conditions: Conditions
    stop_reason: str
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    block_ms: _containers.RepeatedScalarFieldContainer[float]
    versus: PairedBlocks
    def __init__(self, sha256: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., throughput: _Optional[float] = ..., session_load_ms: _Optional[float] = ..., first_inference_ms: _Optional[float] = ..., peak_rss_bytes: _Optional[int] = ..., conditions: _Optional[_Union[Conditions, _Mapping]] = ..., stop_reason: _Optional[str] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., block_ms: _Optional[_Iterable[float]] = ..., versus: _Optional[_Union[PairedBlocks, _Mapping]] = ...) -> None: ...

class PairedBlocks(_message.Message):
    __slots__ = ("sha256", "plan", "latency", "block_runs", "a_ms", "b_ms", "b_first", "ratio", "ratio_low", "ratio_high")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    BLOCK_RUNS_FIELD_NUMBER: _ClassVar[int]
    A_MS_FIELD_NUMBER: _ClassVar[int]
    B_MS_FIELD_NUMBER: _ClassVar[int]
    B_FIRST_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    RATIO_LOW_FIELD_NUMBER: _ClassVar[int]
    RATIO_HIGH_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    plan: Plan
    latency: LatencyStats
    block_runs: int
    a_ms: _containers.RepeatedScalarFieldContainer[float]
    b_ms: _containers.RepeatedScalarFieldContainer[float]
    b_first: _containers.RepeatedScalarFieldContainer[bool]
    ratio: float
    ratio_low: float
    ratio_high: float
    def __init__(self, sha256: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., latency: _Optional[_Union[LatencyStats, _Mapping]] = ..., block_runs: _Optional[int] = ..., a_ms: _Optional[_Iterable[float]] = ..., b_ms: _Optional[_Iterable[float]] = ..., b_first: _Optional[_Iterable[bool]] = ..., ratio: _Optional[float] = ..., ratio_low: _Optional[float] = ..., ratio_high: _Optional[float] = ...) -> None: ...

class BenchmarkEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: BenchmarkProgress
    result: BenchmarkResult
    def __init__(self, progress: _Optional[_Union[BenchmarkProgress, _Mapping]] = ..., result: _Optional[_Union[BenchmarkResult, _Mapping]] = ...) -> None: ...

class InferResult(_message.Message):
    __slots__ = ("version", "outputs", "latency_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    version: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    latency_ms: float
    def __init__(self, version: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ("refresh",)
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    refresh: bool
    def __init__(self, refresh: bool = ...) -> None: ...

class CpuCluster(_message.Message):
    __slots__ = ("core_name", "cpus", "max_freq_mhz", "implementer", "part")
    CORE_NAME_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MAX_FREQ_MHZ_FIELD_NUMBER: _ClassVar[int]
    IMPLEMENTER_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    core_name: str
    cpus: _containers.RepeatedScalarFieldContainer[int]
    max_freq_mhz: int
    implementer: str
    part: str
    def __init__(self, core_name: _Optional[str] = ..., cpus: _Optional[_Iterable[int]] = ..., max_freq_mhz: _Optional[int] = ..., implementer: _Optional[str] = ..., part: _Optional[str] = ...) -> None: ...

class Temperature(_message.Message):
    __slots__ = ("zone", "type", "celsius")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CELSIUS_FIELD_NUMBER: _ClassVar[int]
    zone: str
    type: str
    celsius: float
    def __init__(self, zone: _Optional[str] = ..., type: _Optional[str] = ..., celsius: _Optional[float] = ...) -> None: ...

class Accelerator(_message.Message):
    __slots__ = ("kind", "name", "path", "driver_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    path: str
    driver_version: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., path: _Optional[str] = ..., driver_version: _Optional[str] = ...) -> None: ...

class OnnxRuntimeInfo(_message.Message):
    __slots__ = ("version", "max_ir_version", "max_opset", "execution_providers", "error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_IR_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_OPSET_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    version: str
    max_ir_version: int
    max_opset: int
    execution_providers: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, version: _Optional[str] = ..., max_ir_version: _Optional[int] = ..., max_opset: _Optional[int] = ..., execution_providers: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("arch", "cpu_vendor", "cpu_model", "physical_cores", "logical_cores", "usable_cores", "clusters", "isa_features", "memory_total_bytes", "memory_available_bytes", "store_free_bytes", "board_model", "os_name", "kernel", "libc", "python_version", "onnxruntime", "accelerators", "cpu_governor", "temperatures", "agent_version", "fingerprint", "device_id", "hostname", "warnings", "emulation", "max_message_bytes", "max_infer_bytes", "request_timeout_s", "max_benchmark_seconds")
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_VENDOR_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    USABLE_CORES_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    ISA_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORE_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BOARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    OS_NAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    LIBC_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    CPU_GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURES_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    EMULATION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_INFER_BYTES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_BENCHMARK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    arch: str
    cpu_vendor: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    usable_cores: int
    clusters: _containers.RepeatedCompositeFieldContainer[CpuCluster]
    isa_features: _containers.RepeatedScalarFieldContainer[str]
    memory_total_bytes: int
    memory_available_bytes: int
    store_free_bytes: int
    board_model: str
    os_name: str
    kernel: str
    libc: str
    python_version: str
    onnxruntime: OnnxRuntimeInfo
    accelerators: _containers.RepeatedCompositeFieldContainer[Accelerator]
    cpu_governor: str
    temperatures: _containers.RepeatedCompositeFieldContainer[Temperature]
    agent_version: str
    fingerprint: str
    device_id: str
    hostname: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    emulation: str
    max_message_bytes: int
    max_infer_bytes: int
    request_timeout_s: float
    max_benchmark_seconds: float
    def __init__(self, arch: _Optional[str] = ..., cpu_vendor: _Optional[str] = ..., cpu_model: _Optional[str] = ..., physical_cores: _Optional[int] = ..., logical_cores: _Optional[int] = ..., usable_cores: _Optional[int] = ..., clusters: _Optional[_Iterable[_Union[CpuCluster, _Mapping]]] = ..., isa_features: _Optional[_Iterable[str]] = ..., memory_total_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ..., store_free_bytes: _Optional[int] = ..., board_model: _Optional[str] = ..., os_name: _Optional[str] = ..., kernel: _Optional[str] = ..., libc: _Optional[str] = ..., python_version: _Optional[str] = ..., onnxruntime: _Optional[_Union[OnnxRuntimeInfo, _Mapping]] = ..., accelerators: _Optional[_Iterable[_Union[Accelerator, _Mapping]]] = ..., cpu_governor: _Optional[str] = ..., temperatures: _Optional[_Iterable[_Union[Temperature, _Mapping]]] = ..., agent_version: _Optional[str] = ..., fingerprint: _Optional[str] = ..., device_id: _Optional[str] = ..., hostname: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., emulation: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_infer_bytes: _Optional[int] = ..., request_timeout_s: _Optional[float] = ..., max_benchmark_seconds: _Optional[float] = ...) -> None: ...

class ProfileRequest(_message.Message):
    __slots__ = ("name", "version", "sha256", "plan", "inputs", "input_shapes", "runs", "warmup", "include_trace", "inputs_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TRACE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    plan: Plan
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    runs: int
    warmup: int
    include_trace: bool
    inputs_sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ..., runs: _Optional[int] = ..., warmup: _Optional[int] = ..., include_trace: bool = ..., inputs_sha256: _Optional[str] = ...) -> None: ...

class NodeProfile(_message.Message):
    __slots__ = ("node", "op_type", "provider", "calls", "total_ms", "mean_ms", "share")
    NODE_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    node: str
    op_type: str
    provider: str
    calls: int
    total_ms: float
    mean_ms: float
    share: float
    def __init__(self, node: _Optional[str] = ..., op_type: _Optional[str] = ..., provider: _Optional[str] = ..., calls: _Optional[int] = ..., total_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., share: _Optional[float] = ...) -> None: ...

class OpTypeProfile(_message.Message):
    __slots__ = ("op_type", "provider", "nodes", "calls", "total_ms", "share")
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    op_type: str
    provider: str
    nodes: int
    calls: int
    total_ms: float
    share: float
    def __init__(self, op_type: _Optional[str] = ..., provider: _Optional[str] = ..., nodes: _Optional[int] = ..., calls: _Optional[int] = ..., total_ms: _Optional[float] = ..., share: _Optional[float] = ...) -> None: ...

class ProfileResult(_message.Message):
    __slots__ = ("sha256", "plan", "runs", "run_ms", "node_ms", "nodes", "op_types", "trace", "onnxruntime_version")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    RUN_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_MS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    OP_TYPES_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    plan: Plan
    runs: int
    run_ms: float
    node_ms: float
    nodes: _containers.RepeatedCompositeFieldContainer[NodeProfile]
    op_types: _containers.RepeatedCompositeFieldContainer[OpTypeProfile]
    trace: bytes
    onnxruntime_version: str
    def __init__(self, sha256: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ..., runs: _Optional[int] = ..., run_ms: _Optional[float] = ..., node_ms: _Optional[float] = ..., nodes: _Optional[_Iterable[_Union[NodeProfile, _Mapping]]] = ..., op_types: _Optional[_Iterable[_Union[OpTypeProfile, _Mapping]]] = ..., trace: _Optional[bytes] = ..., onnxruntime_version: _Optional[str] = ...) -> None: ...
