"""Pull mode's documents: what each side accepts from the other, field by field."""

from __future__ import annotations

import json

import pytest

from edgeopt.proto import fleetstate as fs

ART = "sha256:" + "a" * 64


def desired(**change: object) -> bytes:
    model = {"name": "digits", "version": "v1", "artifact": ART}
    data: dict[str, object] = {"device": "pi-7", "generation": 3, "published": 1.0,
                               "deployment": 0, "models": [model]}  # fmt: skip
    data.update(change)
    return json.dumps(data).encode()


def test_a_desired_state_round_trips() -> None:
    state = fs.Desired("pi-7", 2, (fs.DesiredModel("digits", "v1", ART, "fp32", ART, "v0"),))
    assert fs.Desired.from_bytes(state.to_bytes()) == state


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "not a JSON object"),
        (desired(device="../x"), "cannot name a registry tag"),
        (desired(generation=-1), "generation"),
        (desired(generation=True), "generation: want a number"),
        (desired(models="x"), "models: want a list"),
        (desired(models=[{"name": "a/b", "version": "v1", "artifact": ART}]), "name"),
        (desired(models=[{"name": "a", "version": "v 1", "artifact": ART}]), "version"),
        (desired(models=[{"name": "a", "version": "v1", "artifact": "sha256:XYZ"}]), "artifact"),
        (desired(models=[{"name": "a", "version": "v1", "artifact": ART}] * 2), "appears twice"),
        (
            desired(
                models=[
                    {"name": f"m{i}", "version": "v1", "artifact": ART}
                    for i in range(fs.MAX_MODELS + 1)
                ]
            ),
            "at most 64",
        ),
        (b" " * (fs.MAX_DOCUMENT_BYTES + 1), "over"),
    ],
)
def test_a_malformed_desired_state_names_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fs.Desired.from_bytes(raw)


def test_a_status_from_a_board_is_checked() -> None:
    status = fs.Status("pi-7", 5.0, "0.1.0", ART, 3, True,
                       (fs.ModelStatus("digits", "v1", "b" * 64, ART),), "",
                       {"arch": "aarch64"}, {"poll_s": 0.01})  # fmt: skip
    assert fs.Status.from_bytes(status.to_bytes()) == status
    data = json.loads(status.to_bytes())
    for key, value, message in (
        ("converged", "yes", "converged"),
        ("models", [{"name": "digits", "state": "exploded"}], "state"),
        ("models", [{"name": "digits", "state": "active", "sha256": "../../x"}], "sha256"),
        ("timings", {"poll_s": float("nan")}, "out of range"),
        ("capabilities", [1], "capabilities"),
        ("error", "x" * 3000, "error"),
    ):
        bad = dict(data, **{key: value})
        with pytest.raises(ValueError, match=message):
            fs.Status.from_bytes(json.dumps(bad).encode())


def test_artifact_manifests() -> None:
    plan = fs.Descriptor(fs.PLAN_MEDIA_TYPE, ART, 10)
    model = fs.Descriptor(fs.MODEL_MEDIA_TYPE, "sha256:" + "c" * 64, 1000)
    manifest = fs.artifact_manifest(plan, model, None, "digits", "v1", "fp32")
    parsed = fs.parse_artifact(manifest, 1 << 20)
    assert (parsed.model, parsed.plan, parsed.name, parsed.precision) == (model, plan, "digits",
                                                                         "fp32")  # fmt: skip
    with pytest.raises(ValueError, match="over 999"):
        fs.parse_artifact(manifest, 999)
    two = dict(manifest, layers=[model.to_json(), model.to_json()])
    with pytest.raises(ValueError, match=r"one application/vnd\.edgeopt\.onnx\.v1 layer"):
        fs.parse_artifact(two, 1 << 20)
    other = dict(manifest, artifactType="application/vnd.oci.image.config.v1+json")
    with pytest.raises(ValueError, match=r"not a application/vnd\.edgeopt\.model\.v1"):
        fs.parse_artifact(other, 1 << 20)
    named = dict(manifest, annotations={fs.ANNOTATION_NAME: "../x", fs.ANNOTATION_VERSION: "v1"})
    with pytest.raises(ValueError, match="name annotation"):
        fs.parse_artifact(named, 1 << 20)
    huge = dict(manifest, layers=[dict(model.to_json(), size=-1)])
    with pytest.raises(ValueError, match="size"):
        fs.parse_artifact(huge, 1 << 20)


def test_tags() -> None:
    assert fs.desired_tag("pi-7") == "desired-pi-7"
    assert fs.status_tag("pi-7") == "status-pi-7"
    assert fs.artifact_tag(ART) == "artifact-" + "a" * 64
    with pytest.raises(ValueError, match="cannot name a registry tag"):
        fs.desired_tag("-x")
