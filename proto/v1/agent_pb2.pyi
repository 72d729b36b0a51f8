from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ("refresh",)
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    refresh: bool
    def __init__(self, refresh: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("arch", "cpu_vendor", "cpu_model", "physical_cores", "logical_cores", "usable_cores", "clusters", "isa_features", "memory_total_bytes", "memory_available_bytes", "store_free_bytes", "board_model", "os_name", "kernel", "libc", "python_version", "onnxruntime", "accelerators", "cpu_governor", "temperatures", "agent_version", "fingerprint", "device_id", "hostname", "warnings")
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
    def __init__(self, arch: _Optional[str] = ..., cpu_vendor: _Optional[str] = ..., cpu_model: _Optional[str] = ..., physical_cores: _Optional[int] = ..., logical_cores: _Optional[int] = ..., usable_cores: _Optional[int] = ..., clusters: _Optional[_Iterable[_Union[CpuCluster, _Mapping]]] = ..., isa_features: _Optional[_Iterable[str]] = ..., memory_total_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ..., store_free_bytes: _Optional[int] = ..., board_model: _Optional[str] = ..., os_name: _Optional[str] = ..., kernel: _Optional[str] = ..., libc: _Optional[str] = ..., python_version: _Optional[str] = ..., onnxruntime: _Optional[_Union[OnnxRuntimeInfo, _Mapping]] = ..., accelerators: _Optional[_Iterable[_Union[Accelerator, _Mapping]]] = ..., cpu_governor: _Optional[str] = ..., temperatures: _Optional[_Iterable[_Union[Temperature, _Mapping]]] = ..., agent_version: _Optional[str] = ..., fingerprint: _Optional[str] = ..., device_id: _Optional[str] = ..., hostname: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
