"""Mixed precision: the corpus models where a full precision fails cosine >= 0.99, made to pass
by keeping the fewest nodes float (`compress --keep-float auto`), and what that costs in speed.

    python benchmarks/mixed.py [--rounds 80]      (or `make bench`)

For each (model, precision) of `CASES`: the full variant's cosine on the validation samples
(for fp16: ONNX Runtime's converter alone, without edgeopt's range rule), the search
(`edgeopt.host.compress.sensitivity.search`, gate cosine >= 0.99: nodes kept float, variants
made, seconds; for fp16 the nodes kept float32 for range count too), the mixed variant's
cosine, and the latency of fp32, full and mixed on this host at 1 and 2 threads, timed in one
`measure_host` call (the three take turns block by block, so a slow spell hits all alike).
Kept gain = (fp32 - mixed) / (fp32 - full): the share of the full variant's speed-up the mixed
one keeps (goal >= 0.8 where the full one was faster than fp32). Data: 8 calibration and 4
validation samples made as in benchmarks/corpus.py. Writes its table into
benchmarks/RESULTS.md between the mixed markers.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest, Gate, compress  # noqa: E402
from edgeopt.host.compress import data as datasets  # noqa: E402
from edgeopt.host.compress.latency import host_cpu, measure_host  # noqa: E402
from edgeopt.host.compress.sensitivity import search  # noqa: E402
from edgeopt.host.compress.validate import validate  # noqa: E402
from edgeopt.host.errors import EdgeoptError  # noqa: E402
from tests.corpus import CORPUS, fetch, make_inputs, write_data  # noqa: E402

CASES = (
    ("crnn-lstm-ddddocr", "int8-static"), ("ppocr-det", "int8-static"),
    ("ppocr-rec", "int8-static"), ("oww-melspec", "int8-static"),
    ("albert-sudachi", "int8-static"), ("oww-melspec", "int8-dynamic"),
    ("albert-sudachi", "int8-dynamic"), ("magika-v1", "fp16"), ("ppocr-det", "fp16"),
)  # fmt: skip
"""Corpus models and the precision whose full variant fails cosine >= 0.99 (the corpus
section of RESULTS.md; fp16 as ONNX Runtime's converter makes it). ALBERT's full int8 variants
failed while the tagger was fed random characters and its labels compared by a cosine of their
ids; on Japanese sentences, compared by label agreement, they pass: its rows stay to show it."""
GATE = 0.99


def _short(name: str) -> str:
    return name if len(name) <= 40 else "..." + name[-37:]


def _converter_alone(reference: Path, folder: Path) -> Path:
    """fp16 as ONNX Runtime's converter makes it, without edgeopt's range rule."""
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

    out = folder / f"{reference.stem}.converter.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(reference)), keep_io_types=True), str(out))
    return out


def _cos(value: float) -> str:
    return f"{value:.4f}" if value == value else "inf/NaN"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=80)
    parser.add_argument("--cases", default=",".join(f"{k}:{p}" for k, p in CASES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["EDGEOPT_CACHE_DIR"] = str(tmp / "cache")  # a cold search: nothing cached
        for case in args.cases.split(","):
            key, precision = case.split(":")
            model = next(m for m in CORPUS if m.key == key)
            request = CompressRequest(
                model=fetch((model,))[key], precision=precision,  # type: ignore[arg-type]
                calibration=write_data(model, tmp, 8, 1), validation=write_data(model, tmp, 4, 2),
                gate=Gate(min_cosine=GATE),
            )  # fmt: skip
            fp32 = compress(replace(request, precision="fp32", gate=Gate()))
            if precision == "fp16":
                full_artifact = _converter_alone(fp32.artifact, tmp)
                assert request.validation is not None
                data = datasets.load(request.validation, onnx.load(str(fp32.artifact)),
                                     purpose="validation")  # fmt: skip
                checked = validate(fp32.artifact, full_artifact, data)
                full_cosine = math.nan if checked.non_finite_samples else checked.cosine
            else:
                full = compress(replace(request, gate=Gate()))
                assert full.validation is not None
                full_artifact, full_cosine = full.artifact, full.validation.cosine
            label = f"{key} {precision}"
            try:
                found = search(request, "auto")
            except EdgeoptError as exc:
                rows.append(f"| {label} | {_cos(full_cosine)} | refused: {exc} | | | | | | | |")
                print(rows[-1], flush=True)
                continue
            mixed = found.report
            assert mixed.validation is not None
            ranged = sum(int(m.group(1)) for n in mixed.notes
                         if (m := re.search(r"float16's range.*?: (\d+) nodes?: ", n)))  # fmt: skip
            feed = make_inputs(model, 1, 3)
            cells = []
            for threads in (1, 2):
                t = measure_host([fp32.artifact, full_artifact, mixed.artifact], feed,
                                 threads=threads, rounds=args.rounds, budget_s=60)  # fmt: skip
                f, q, m = (x.median_ms for x in t)
                kept = (f - m) / (f - q) if f > q else float("nan")
                cells.append(f"{m / f:.2f} / {q / f:.2f} / {kept:.2f}")
            share = found.ranking.macs_share(len(found.kept))
            floats = f"{len(found.kept)} of {len(found.ranking.nodes)}" if found.ranking.nodes \
                else "0 (full passes)"  # fmt: skip
            if found.kept and math.isfinite(share):
                floats += f" ({share:.0%} of MACs)"
            won = next((b.order for b in found.bisections[::-1] if b.kept == len(found.kept)),
                       "-")  # fmt: skip
            if ranged:
                floats += f" + {ranged} for range"
            rows.append(
                f"| {label} | {_cos(full_cosine)} | {mixed.validation.cosine:.4f} | "
                f"{floats} | {won} | {found.probes} | "
                f"{found.seconds:.0f} s | {cells[0]} | {cells[1]} | "
                f"{', '.join(_short(n) for n in found.kept[:3])}"
                f"{' ...' if len(found.kept) > 3 else ''} |"
            )
            print(rows[-1], flush=True)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Mixed precision: the fewest nodes kept float (`python benchmarks/mixed.py`)",
        "",
        f"Measured {when} on {host_cpu()}. `--keep-float auto`, gate cosine >= {GATE} on 4 "
        "validation samples (8 calibration). Full: the precision whole (fp16: ONNX Runtime's "
        "converter alone, without edgeopt's range rule). Float nodes: kept by the search, of "
        "those ranked (int8-static: on its QDQ graph; int8-dynamic and fp16: emulated), plus "
        "for fp16 those kept float32 because values pass float16's range; the share of the "
        "multiply-adds they hold. Found by: the bisection whose answer won (int8: by harm, "
        "and by harm per multiply-add over lighter prefixes). Latency: mixed / "
        "fp32, full / fp32 and the kept gain (fp32 - mixed) / (fp32 - full) (goal >= 0.8 "
        "where full beat fp32; nan where it did not), medians of interleaved blocks on this "
        "host, batch 1. Search (cold cache): the full variant against the gate, then the "
        "ranking (one session per node) and the bisection's quantizations.",
        "",
        "| model, precision | full cosine | mixed cosine | float nodes | found by | variants "
        "made | search | 1T mixed / full / kept gain | 2T mixed / full / kept gain | kept float |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip
    print(write_section("mixed", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
