"""Generate the Python code of the wire contract (proto/v1/*.proto) and check it is up to date.

`python scripts/gen_proto.py` rewrites proto/v1/*_pb2.py, *_pb2_grpc.py and *_pb2.pyi;
`python scripts/gen_proto.py --check` exits 1 and names the files that regenerating would change.

protoc's path mapping (`edgeopt/proto=proto`) makes the generated modules import each other as
`edgeopt.proto.v1...`, the name the package is installed under. The generator is pinned (the exact
grpcio-tools in pyproject's dev extra) so that regenerating is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
VIRTUAL = "edgeopt/proto"


def generate(out: Path) -> list[Path]:
    """Run protoc on every .proto under proto/; return the generated files, relative to proto/."""
    import grpc_tools  # noqa: PLC0415  (a dev dependency: only this script needs it)

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(PROTO_DIR.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
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
