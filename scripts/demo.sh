#!/usr/bin/env bash
# `make demo`: start a real edgeopt-agent on a free loopback port with a generated token, write a
# temporary inventory naming it `local`, ask it what it is through the host CLI; train a small
# CNN on scikit-learn's handwritten digits, show the plan for this board and measure it there,
# deploy it (fp32, then static int8), list the models, run a real digit through the board,
# roll back to fp32, and stop the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
work=$(mktemp -d)
agent_pid=""
cleanup() {
    if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
        kill -TERM "$agent_pid"; wait "$agent_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

umask 077
"$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$work/token"
"$BIN/edgeopt-agent" serve --listen 127.0.0.1:0 --store "$work/store" \
    --token-file "$work/token" --ready-file "$work/ready" > "$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 1 100); do
    [ -s "$work/ready" ] && break
    kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; exit 1; }
    sleep 0.1
done
[ -s "$work/ready" ] || { echo "agent did not become ready"; cat "$work/agent.log"; exit 1; }
address=$(cat "$work/ready")
# The profile this machine should match: the demo's `devices check` shows a real comparison.
profile=x86-avx2
grep -qw avx512_vnni /proc/cpuinfo && profile=x86-avx512-vnni
cat > "$work/edgeopt.toml" <<TOML
[devices.local]
address = "$address"
profile = "$profile"
tags = ["demo"]
token_file = "token"
TOML
export EDGEOPT_INVENTORY="$work/edgeopt.toml"
export EDGEOPT_STATE="$work/state.db"
export EDGEOPT_CACHE_DIR="$work/cache"

echo "== agent pid $agent_pid listening on $address (token in a temporary file)"
echo
echo '$ edgeopt devices'
"$BIN/edgeopt" devices
echo
echo '$ edgeopt devices show local'
"$BIN/edgeopt" devices show local
echo
echo '$ edgeopt devices check local'
"$BIN/edgeopt" devices check local || true
echo
echo '$ edgeopt profiles'
"$BIN/edgeopt" profiles

echo
echo '== training a small CNN on scikit-learn'"'"'s handwritten digits (a few seconds)'
"$BIN/python" -c "
import sys; sys.path.insert(0, '.')
from pathlib import Path
import numpy as np
from tests.models import train_digits_cnn
m = train_digits_cnn(Path('$work'))
data = np.load(m.validation)
np.savez('$work/digit.npz', image=data['image'][:1])
print(f'held-out accuracy {m.accuracy:.1%}; the digit to read is a {int(data[\"labels\"][0])}')
"
echo
echo '$ edgeopt plan digits.onnx --device local --calibration calib.npz'
"$BIN/edgeopt" plan "$work/digits.onnx" --device local --calibration "$work/calib.npz"
echo
echo '$ edgeopt bench digits.onnx --device local --variants fp32,int8-static --calibration calib.npz --validate val.npz --max-seconds 2 --html report.html'
"$BIN/edgeopt" bench "$work/digits.onnx" --device local --variants fp32,int8-static \
    --calibration "$work/calib.npz" --validate "$work/val.npz" --max-seconds 2 \
    --html "$work/report.html"
echo "(report.html: $(wc -c < "$work/report.html") bytes, one self-contained page)"
echo
echo '$ edgeopt deploy digits.onnx --device local --precision fp32'
"$BIN/edgeopt" deploy "$work/digits.onnx" --device local --precision fp32 2>/dev/null
echo
echo '$ edgeopt deploy digits.onnx --device local --precision int8-static --calibration calib.npz --validate val.npz --max-accuracy-drop 0.01'
"$BIN/edgeopt" deploy "$work/digits.onnx" --device local --precision int8-static \
    --calibration "$work/calib.npz" --validate "$work/val.npz" --max-accuracy-drop 0.01 2>/dev/null
echo
echo '$ edgeopt models --device local'
"$BIN/edgeopt" models --device local
echo
echo '$ edgeopt infer digits --device local --input digit.npz'
"$BIN/edgeopt" infer digits --device local --input "$work/digit.npz"
echo
echo '$ edgeopt rollback digits --device local'
"$BIN/edgeopt" rollback digits --device local
echo
echo '$ edgeopt deployments'
"$BIN/edgeopt" deployments
