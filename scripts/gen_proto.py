"""Generate the Python code of the wire contract (proto/v1/*.proto) and check it is up to date.

`python scripts/gen_proto.py` rewrites proto/v1/*_pb2.py, *_pb2_grpc.py and *_pb2.pyi;
`python scripts/gen_proto.py --check` exits 1 and names the files that regenerating would change.

protoc's path mapping (`edgeopt/proto=proto`) makes the generated modules import each other as
`edgeopt.proto.v1...`, the name the package is installed under. The generator is pinned and
old on purpose: grpcio-tools 1.70.0 (protoc 29, protobuf 5.29 code), in its own venv
(`.venv/grpc-tools-1.70`, made by the Makefile), because generated code refuses any protobuf
runtime older than its protoc and boards ship old ones: Python 3.8 gets protobuf 5.29 and
grpcio 1.70 at most. That code loads on every runtime up to protobuf 7 and grpcio 1.85
(tests/proto/test_old_runtime.py runs a real agent on the oldest pair). Pinned, regenerating
is byte-for-byte reproducible. $EDGEOPT_PROTOC_PYTHON names another generator interpreter.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
VIRTUAL = "edgeopt/proto"


GENERATOR = ROOT / ".venv" / "grpc-tools-1.70" / "bin" / "python"
"""The interpreter with grpcio-tools 1.70.0 (the Makefile's `proto` and `unit` targets make it)."""


def generator() -> str:
    """The Python that runs protoc: $EDGEOPT_PROTOC_PYTHON, else the pinned venv."""
    chosen = os.environ.get("EDGEOPT_PROTOC_PYTHON") or str(GENERATOR)
    if not Path(chosen).exists():
        sys.exit(f"{chosen} is missing: `make proto` (or `make test`) makes it")
    return chosen


def generate(out: Path) -> list[Path]:
    """Run protoc on every .proto under proto/; return the generated files, relative to proto/."""
    python = generator()
    found = subprocess.run(
        [python, "-c", "import grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    well_known = Path(found.stdout.strip()) / "_proto"
    sources = sorted(PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            python,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={VIRTUAL}={PROTO_DIR}",
            f"--proto_path={well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(f"{VIRTUAL}/{p.relative_to(PROTO_DIR).as_posix()}" for p in sources),
        ]
        subprocess.run(cmd, check=True)
        made = Path(tmp) / VIRTUAL
        files = sorted(p.relative_to(made) for p in made.rglob("*") if p.is_file())
        for rel in files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made / rel, out / rel)
    return files


def main() -> int:
    """Generate into proto/, or with --check compare a fresh generation against it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args()
    if not args.check:
        for rel in generate(PROTO_DIR):
            print(f"wrote proto/{rel}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
        stale = [
            f"proto/{rel}"
            for rel in files
            if not (PROTO_DIR / rel).exists()
            or not filecmp.cmp(Path(tmp) / rel, PROTO_DIR / rel, shallow=False)
        ]
    if stale:
        print("generated code is out of date; run `make proto`: " + ", ".join(stale))
        return 1
    print(f"generated code is up to date ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
