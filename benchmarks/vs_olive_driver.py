"""Olive's session-parameter tuning through a workflow: runs in Olive's own venv.

    <olive venv>/bin/python benchmarks/vs_olive_driver.py CONFIG.json RESULT.json

CONFIG is an Olive run config whose OrtSessionParamsTuning pass lists the values to search
under "search" (a name -> list map); they become Olive's Categorical search parameters here,
because Olive 0.13 rejects plain lists in that pass's JSON config. Writes the wall time of
Olive's run, the settings it chose and the latency Olive measured for them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from olive.search.search_parameter import Categorical
from olive.workflows import run


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    tuning = config["passes"]["session_params_tuning"]
    for name, values in tuning.pop("search").items():
        tuning[name] = Categorical(values)
    start = time.perf_counter()
    output = run(config)
    seconds = time.perf_counter() - start
    models = output.get_output_models()
    best = models[0].get_inference_config() if models else None
    metrics = models[0].metrics_value if models else None
    Path(sys.argv[2]).write_text(
        json.dumps({"seconds": seconds, "best": best, "metrics": metrics}, default=str)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
