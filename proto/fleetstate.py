"""Pull mode's documents in an OCI registry: artifacts, each device's desired state and status.

One repository holds a fleet's:

    artifact-<hex>   an OCI artifact (artifactType ARTIFACT_TYPE): config = the RunPlan as JSON,
                     layers = the ONNX model, and, when the publisher had data, the smoke input
                     (a tensor file); annotations name the model, version and precision. One per
                     distinct (model bytes, plan): two plans of the same bytes share the blob.
    desired-<device> a manifest (artifactType DESIRED_TYPE) whose config is a `Desired`: which
                     artifact (by manifest digest) each model name should run.
    status-<device>  a manifest (artifactType STATUS_TYPE) whose config is a `Status` the agent
                     pushes: what it runs, what it refused and why, its capabilities, timings.

Both sides parse what the other wrote and trust none of it: `Desired.from_bytes` and
`Status.from_bytes` check every field (types, patterns, counts, sizes) and raise ValueError with
the field's name. Parsable by Python 3.8 (the agent's oldest).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from edgeopt.proto.oci import DIGEST_PATTERN, MANIFEST_MEDIA_TYPE

__all__ = [
    "ARTIFACT_TYPE",
    "DESIRED_TYPE",
    "DEVICE_PATTERN",
    "INPUTS_MEDIA_TYPE",
    "MAX_DOCUMENT_BYTES",
    "MAX_MODELS",
    "MODEL_MEDIA_TYPE",
    "NAME_PATTERN",
    "PLAN_MEDIA_TYPE",
    "STATUS_TYPE",
    "VERSION_PATTERN",
    "Artifact",
    "Descriptor",
    "Desired",
    "DesiredModel",
    "ModelStatus",
    "Status",
    "artifact_manifest",
    "artifact_tag",
    "check_device",
    "desired_tag",
    "document_manifest",
    "parse_artifact",
    "parse_document_manifest",
    "status_tag",
]

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A model name (the agent's store refuses any other)."""
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
"""A version label."""
DEVICE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
"""A device name: it becomes part of a tag (at most 128 characters)."""
ARTIFACT_TYPE = "application/vnd.edgeopt.model.v1"
PLAN_MEDIA_TYPE = "application/vnd.edgeopt.plan.v1+json"
MODEL_MEDIA_TYPE = "application/vnd.edgeopt.onnx.v1"
INPUTS_MEDIA_TYPE = "application/vnd.edgeopt.tensors.v1"
DESIRED_TYPE = "application/vnd.edgeopt.desired.v1+json"
STATUS_TYPE = "application/vnd.edgeopt.status.v1+json"
MAX_DOCUMENT_BYTES = 1 << 20
"""The largest config (plan, desired state, status) either side reads."""
MAX_MODELS = 64
"""Models one desired state may name."""
MAX_MANIFEST_FOR_DOCUMENTS = 64 << 10
"""The largest artifact, desired or status manifest either side reads (they are small)."""
ANNOTATION_NAME = "dev.edgeopt.model.name"
ANNOTATION_VERSION = "dev.edgeopt.model.version"
ANNOTATION_PRECISION = "dev.edgeopt.precision"


def check_device(name: str) -> str:
    """`name` if it can name a device's tags; else ValueError."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ValueError(
            f"device name {str(name)[:100]!r} cannot name a registry tag: use 1 to 96 letters, "
            "digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def desired_tag(device: str) -> str:
    """The tag of a device's desired state."""
    return f"desired-{check_device(device)}"


def status_tag(device: str) -> str:
    """The tag a device's agent pushes its status under."""
    return f"status-{check_device(device)}"


def artifact_tag(manifest_digest: str) -> str:
    """The tag an artifact is kept under (so a registry's garbage collection keeps it)."""
    return f"artifact-{manifest_digest.split(':', 1)[1]}"


# --- reading what the other side wrote ------------------------------------------------------


def _text(data: Mapping[str, Any], key: str, limit: int = 256, pattern: Any = None) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{key}: want a string of at most {limit} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise ValueError(f"{key}: {value[:80]!r} is not allowed")
    return value


def _number(data: Mapping[str, Any], key: str, low: float = 0.0, high: float = 1e15) -> float:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key}: want a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{key}: {value} is out of range")
    return float(value)


def _object(raw: bytes | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"the {what} is {len(raw)} bytes, over {MAX_DOCUMENT_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the {what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"the {what} is not a JSON object")
    return data


def _encode(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest points at."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As it sits in a manifest."""
        data: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                                "size": self.size}  # fmt: skip
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @classmethod
    def parse(cls, data: Any, what: str, max_size: int) -> Descriptor:
        """A descriptor from a manifest, checked (digest form, size within `max_size`)."""
        if not isinstance(data, dict):
            raise ValueError(f"{what}: want a descriptor object")
        media_type = _text(data, "mediaType", 255)
        digest = _text(data, "digest", 71, DIGEST_PATTERN)
        size = data.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= max_size:
            raise ValueError(f"{what}: size {size!r} is not within 1..{max_size}")
        notes = data.get("annotations") or {}
        if not isinstance(notes, dict) or len(notes) > 32:
            raise ValueError(f"{what}: annotations want at most 32 strings")
        pairs = tuple(sorted((str(k)[:256], str(v)[:1024]) for k, v in notes.items()))
        return cls(media_type, digest, size, pairs)


def document_manifest(
    artifact_type: str,
    config: Descriptor,
    layers: Sequence[Descriptor] = (),
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An OCI image manifest for an artifact (the OCI 1.1 artifact form, as ORAS writes)."""
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return manifest


def parse_document_manifest(
    manifest: Mapping[str, Any], artifact_type: str, config_type: str
) -> tuple[Descriptor, list[Descriptor], dict[str, str]]:
    """(config, layers, annotations) of a manifest that must be of `artifact_type`."""
    if manifest.get("schemaVersion") != 2:
        raise ValueError("not an OCI manifest (schemaVersion is not 2)")
    kind = manifest.get("artifactType") or (manifest.get("config") or {}).get("mediaType")
    if kind != artifact_type:
        raise ValueError(f"the manifest is a {str(kind)[:80]!r}, not a {artifact_type}")
    config = Descriptor.parse(manifest.get("config"), "config", MAX_DOCUMENT_BYTES)
    if config.media_type != config_type:
        raise ValueError(f"its config is a {config.media_type!r}, not a {config_type}")
    raw_layers = manifest.get("layers") or []
    if not isinstance(raw_layers, list) or len(raw_layers) > 8:
        raise ValueError("layers: want a list of at most 8")
    layers = [Descriptor.parse(x, f"layer {i}", 1 << 42) for i, x in enumerate(raw_layers)]
    notes = manifest.get("annotations") or {}
    if not isinstance(notes, dict):
        raise ValueError("annotations: want an object")
    return config, layers, {str(k)[:256]: str(v)[:1024] for k, v in list(notes.items())[:32]}


@dataclass(frozen=True)
class Artifact:
    """What an artifact manifest says: the plan's blob, the model's, the smoke input's."""

    plan: Descriptor
    model: Descriptor
    inputs: Descriptor | None
    name: str
    version: str
    precision: str


def artifact_manifest(  # noqa: PLR0917  (each field of the manifest, in its order)
    plan: Descriptor, model: Descriptor, inputs: Descriptor | None,
    name: str, version: str, precision: str,
) -> dict[str, Any]:  # fmt: skip
    """The manifest of one artifact (see the module docstring)."""
    layers = [model] + ([inputs] if inputs is not None else [])
    notes = {ANNOTATION_NAME: name, ANNOTATION_VERSION: version, ANNOTATION_PRECISION: precision,
             "org.opencontainers.image.title": f"{name}-{version}.onnx"}  # fmt: skip
    return document_manifest(ARTIFACT_TYPE, plan, layers, notes)


def parse_artifact(manifest: Mapping[str, Any], max_model_bytes: int) -> Artifact:
    """An artifact manifest, checked: one model layer within `max_model_bytes`, names allowed."""
    plan, layers, notes = parse_document_manifest(manifest, ARTIFACT_TYPE, PLAN_MEDIA_TYPE)
    models = [x for x in layers if x.media_type == MODEL_MEDIA_TYPE]
    inputs = [x for x in layers if x.media_type == INPUTS_MEDIA_TYPE]
    if len(models) != 1 or len(inputs) > 1:
        raise ValueError(
            f"an artifact holds one {MODEL_MEDIA_TYPE} layer and at most one "
            f"{INPUTS_MEDIA_TYPE}; this one has {len(models)} and {len(inputs)}"
        )
    if models[0].size > max_model_bytes:
        raise ValueError(f"its model is {models[0].size} bytes, over {max_model_bytes}")
    name, version = notes.get(ANNOTATION_NAME, ""), notes.get(ANNOTATION_VERSION, "")
    for value, pattern, key in ((name, NAME_PATTERN, "name"), (version, VERSION_PATTERN,
                                                                  "version")):  # fmt: skip
        if not pattern.fullmatch(value):
            raise ValueError(f"its {key} annotation {value[:80]!r} is not allowed")
    return Artifact(plan, models[0], inputs[0] if inputs else None, name, version,
                    notes.get(ANNOTATION_PRECISION, "")[:32])  # fmt: skip


# --- the desired state ----------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredModel:
    """One model name and the artifact it should run."""

    name: str
    version: str
    artifact: str
    """The artifact manifest's digest: what is fetched is pinned, whatever tags do meanwhile."""
    precision: str = ""
    previous: str = ""
    """The artifact this one replaced ("" for none): what a rollback goes back to."""
    previous_version: str = ""

    @classmethod
    def parse(cls, data: Any) -> DesiredModel:
        """One entry of a desired state's models, checked."""
        if not isinstance(data, dict):
            raise ValueError("models: each wants an object")
        previous_version = _text(data, "previous_version", 64)
        if previous_version and not VERSION_PATTERN.fullmatch(previous_version):
            raise ValueError(f"previous_version: {previous_version[:80]!r} is not allowed")
        return cls(
            _text(data, "name", 128, NAME_PATTERN),
            _text(data, "version", 64, VERSION_PATTERN),
            _text(data, "artifact", 71, DIGEST_PATTERN),
            _text(data, "precision", 32),
            _text(data, "previous", 71, re.compile(r"(|sha256:[0-9a-f]{64})")),
            previous_version,
        )


@dataclass(frozen=True)
class Desired:
    """What one device should run: written by `edgeopt publish` (and rollback)."""

    device: str
    generation: int
    """Counts publishes to this device; the status echoes the one it applied."""
    models: tuple[DesiredModel, ...]
    published: float = 0.0
    """When (epoch seconds)."""
    deployment: int = 0
    """The host's deployment record it came from (0: none)."""

    def to_bytes(self) -> bytes:
        """The JSON the registry holds (keys sorted: one state, one digest)."""
        data = asdict(self)
        data["models"] = [asdict(m) for m in self.models]
        return _encode(data)

    @classmethod
    def from_bytes(cls, raw: bytes | Mapping[str, Any]) -> Desired:
        """Read and check a desired state; ValueError names what is wrong."""
        data = _object(raw, "desired state")
        models = data.get("models")
        if not isinstance(models, list) or len(models) > MAX_MODELS:
            raise ValueError(f"models: want a list of at most {MAX_MODELS}")
        parsed = tuple(DesiredModel.parse(m) for m in models)
        if len({m.name for m in parsed}) != len(parsed):
            raise ValueError("models: a name appears twice")
        return cls(
            check_device(_text(data, "device", 96)),
            int(_number(data, "generation", 0, 2**53)),
            parsed,
            _number(data, "published"),
            int(_number(data, "deployment", 0, 2**53)),
        )


# --- a device's status ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """One model name on a device, as its agent reports it."""

    name: str
    version: str = ""
    """The active version ("" when none)."""
    sha256: str = ""
    """The active version's model digest (hex)."""
    artifact: str = ""
    """The artifact manifest it came from ("" when pushed, not pulled)."""
    state: str = "active"
    """active (as desired), pending (downloading), refused (the desired one was not activated),
    missing (the desired artifact is not in the registry)."""
    error: str = ""
    wanted: str = ""
    """The desired version, when it differs from the active one."""

    @classmethod
    def parse(cls, data: Any) -> ModelStatus:
        """One entry of a status's models, checked."""
        if not isinstance(data, dict):
            raise ValueError("models: each wants an object")
        version = _text(data, "version", 64)
        if version and not VERSION_PATTERN.fullmatch(version):
            raise ValueError(f"version: {version[:80]!r} is not allowed")
        state = _text(data, "state", 16)
        if state not in ("active", "pending", "refused", "missing"):
            raise ValueError(f"state: {state!r} is not one of active, pending, refused, missing")
        return cls(
            _text(data, "name", 128, NAME_PATTERN), version,
            _text(data, "sha256", 64, re.compile(r"(|[0-9a-f]{64})")),
            _text(data, "artifact", 71, re.compile(r"(|sha256:[0-9a-f]{64})")),
            state, _text(data, "error", 2000), _text(data, "wanted", 64),
        )  # fmt: skip


@dataclass(frozen=True)
class Status:
    """What a device's agent reports under its status tag."""

    device: str
    updated: float
    """When the agent wrote it (the board's clock)."""
    agent_version: str = ""
    desired: str = ""
    """The digest of the desired-state manifest this status answers ("" when none was found)."""
    generation: int = 0
    """That desired state's generation."""
    converged: bool = False
    """Every desired model runs the desired artifact."""
    models: tuple[ModelStatus, ...] = ()
    error: str = ""
    """The last error polling or pulling (registry unreachable, refused credentials...)."""
    capabilities: dict[str, Any] = field(default_factory=dict)
    """The board's capabilities (edgeopt.proto.capabilities.to_dict), for planning."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: last poll, last download, last activation; counters (requests, bytes)."""

    def to_bytes(self) -> bytes:
        """The JSON the registry holds (keys sorted: one state, one digest)."""
        data = asdict(self)
        data["models"] = [asdict(m) for m in self.models]
        return _encode(data)

    @classmethod
    def from_bytes(cls, raw: bytes | Mapping[str, Any]) -> Status:
        """Read and check a status; ValueError names what is wrong."""
        data = _object(raw, "status")
        models = data.get("models") or []
        if not isinstance(models, list) or len(models) > 4 * MAX_MODELS:
            raise ValueError(f"models: want a list of at most {4 * MAX_MODELS}")
        caps = data.get("capabilities") or {}
        if not isinstance(caps, dict):
            raise ValueError("capabilities: want an object")
        timings = data.get("timings") or {}
        if not isinstance(timings, dict) or len(timings) > 64:
            raise ValueError("timings: want an object of at most 64 numbers")
        converged = data.get("converged", False)
        if not isinstance(converged, bool):
            raise ValueError("converged: want true or false")
        return cls(
            check_device(_text(data, "device", 96)),
            _number(data, "updated"),
            _text(data, "agent_version", 64),
            _text(data, "desired", 71, re.compile(r"(|sha256:[0-9a-f]{64})")),
            int(_number(data, "generation", 0, 2**53)),
            converged,
            tuple(ModelStatus.parse(m) for m in models),
            _text(data, "error", 2000),
            caps,
            {str(k)[:64]: _number(timings, k, -1e15) for k in timings},
        )
