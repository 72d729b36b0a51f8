"""Mixed precision: the corpus models whose full static int8 fails cosine >= 0.99, made to pass
by keeping the fewest nodes float (`compress --keep-float auto`), and what that costs in speed.

    python benchmarks/mixed.py [--rounds 40]      (or `make bench`)

For each model: the full int8-static variant (its cosine on the validation samples), the
search (`edgeopt.host.compress.sensitivity.search`, gate cosine >= 0.99: nodes kept float,
variants made, seconds), the mixed variant's cosine, and the latency of fp32, full and mixed
on this host at 1 and 2 threads, timed in one `measure_host` call (the three take turns block
by block, so a slow spell hits all alike). Kept gain = (fp32 - mixed) / (fp32 - full): the
share of the full variant's speed-up the mixed one keeps (goal >= 0.8 where the full one was
faster than fp32). Data: 8 calibration and 4 validation samples made as in
benchmarks/corpus.py. Writes its table into benchmarks/RESULTS.md between the mixed markers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest, Gate, compress  # noqa: E402
from edgeopt.host.compress.latency import host_cpu, measure_host  # noqa: E402
from edgeopt.host.compress.sensitivity import search  # noqa: E402
from edgeopt.host.errors import EdgeoptError  # noqa: E402
from tests.corpus import CORPUS, fetch, make_inputs, write_data  # noqa: E402

MODELS = ("crnn-lstm-ddddocr", "ppocr-det", "ppocr-rec", "oww-melspec", "albert-sudachi")
"""Corpus models whose full int8-static variant fails cosine >= 0.99 (benchmarks/tuning.py)."""
GATE = 0.99


def _short(name: str) -> str:
    return name if len(name) <= 40 else "..." + name[-37:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["EDGEOPT_CACHE_DIR"] = str(tmp / "cache")  # a cold search: nothing cached
        for key in args.models.split(","):
            model = next(m for m in CORPUS if m.key == key)
            request = CompressRequest(
                model=fetch((model,))[key], precision="int8-static",
                calibration=write_data(model, tmp, 8, 1), validation=write_data(model, tmp, 4, 2),
                gate=Gate(min_cosine=GATE),
            )  # fmt: skip
            fp32 = compress(replace(request, precision="fp32", gate=Gate()))
            full = compress(replace(request, gate=Gate()))
            assert full.validation is not None
            try:
                found = search(request, "auto")
            except EdgeoptError as exc:
                rows.append(f"| {key} | {full.validation.cosine:.4f} | refused: {exc} |"
                            " | | | | | | |")  # fmt: skip
                print(rows[-1], flush=True)
                continue
            mixed = found.report
            assert mixed.validation is not None
            feed = make_inputs(model, 1, 3)
            cells = []
            for threads in (1, 2):
                t = measure_host([fp32.artifact, full.artifact, mixed.artifact], feed,
                                 threads=threads, rounds=args.rounds, budget_s=60)  # fmt: skip
                f, q, m = (x.median_ms for x in t)
                kept = (f - m) / (f - q) if f > q else float("nan")
                cells.append(f"{m / f:.2f} / {q / f:.2f} / {kept:.2f}")
            rows.append(
                f"| {key} | {full.validation.cosine:.4f} | {mixed.validation.cosine:.4f} | "
                f"{len(found.kept)} of {len(found.ranking.nodes)} | {found.probes} | "
                f"{found.seconds:.0f} s | {cells[0]} | {cells[1]} | "
                f"{', '.join(_short(n) for n in found.kept[:3])}"
                f"{' ...' if len(found.kept) > 3 else ''} |"
            )
            print(rows[-1], flush=True)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Mixed precision: the fewest nodes kept float (`python benchmarks/mixed.py`)",
        "",
        f"Measured {when} on {host_cpu()}. int8-static with `--keep-float auto`, gate cosine "
        f">= {GATE} on 4 validation samples (8 calibration). Latency: mixed / fp32, full / "
        "fp32 and the kept gain (fp32 - mixed) / (fp32 - full) (goal >= 0.8 where full beat "
        "fp32; nan where it did not), medians of interleaved blocks on this host, batch 1. "
        "Search (cold cache, the fp32 and full variants made before it): the ranking (one "
        "session per node) plus the bisection's quantizations.",
        "",
        "| model | full int8 cosine | mixed cosine | float nodes | variants made | search "
        "| 1T mixed / full / kept gain | 2T mixed / full / kept gain | kept float |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "fp16 on magika and PP-OCR det, and int8-dynamic: the search ranks int8-static (QDQ) "
        "graphs only so far; those take node names (`--keep-float NODE,...`).",
    ])  # fmt: skip
    print(write_section("mixed", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
