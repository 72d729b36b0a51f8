"""Reports of `edgeopt bench`: table, CSV, JSON records, Pareto front, PNG and HTML."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgeopt.host import report

MIB = 1 << 20
SIZES = {
    "fp32": 13_964_571,
    "fp16": 6_982_390,
    "int8-dynamic": 3_634_112,
    "int8-static": 3_598_336,
    "int4-weight": 2_301_440,
}


def case(device: str, variant: str, status: str = "ok", **values: Any) -> dict[str, Any]:
    """A case dict with every key, as bench makes them; timings from p50 and ±ci."""
    p50 = values.pop("p50", None)
    ci = values.pop("ci", 0.01)
    threads = values.pop("threads", 4)
    provider = values.pop("provider", "CPUExecutionProvider")
    data: dict[str, Any] = {
        "run": "run-20251129-1",
        "device": device,
        "variant": variant,
        "threads": threads,
        "provider": provider,
        "status": status,
        "error": "",
        "p50_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "mean_ms": None,
        "std_ms": None,
        "ci_low_ms": None,
        "ci_high_ms": None,
        "samples": 0,
        "throughput": None,
        "size_bytes": SIZES.get(variant, 5 * MIB),
        "speedup": None,
        "accuracy": None,
        "flags": [],
    }
    if p50 is not None:
        data.update(
            p50_ms=p50,
            p90_ms=round(p50 * 1.06, 3),
            p99_ms=round(p50 * 1.21, 3),
            mean_ms=round(p50 * 1.02, 3),
            std_ms=round(p50 * 0.04, 3),
            ci_low_ms=round(p50 * (1 - ci), 3),
            ci_high_ms=round(p50 * (1 + ci), 3),
            samples=200,
            throughput=round(1000 / p50, 2),
        )
    data.update(values)
    return data


def cos(cosine: float, drop: float) -> dict[str, float]:
    return {"cosine": cosine, "accuracy_drop": drop}


# A MobileNetV2-sized model on three boards. pi5 is validated (cosine for every case: accuracy
# is a third objective there), the Jetson is not, rk3588 only partly (so accuracy does not count).
CASES: list[dict[str, Any]] = [
    case("pi5", "fp32", p50=42.0, speedup=1.0, accuracy=cos(1.0, 0.0)),
    case("pi5", "fp16", p50=55.0, speedup=0.7636, accuracy=cos(0.99998, 0.0)),
    case("pi5", "int8-dynamic", p50=24.1, speedup=1.7427, accuracy=cos(0.9950, 0.006)),
    case("pi5", "int8-static", p50=18.7, ci=0.02, speedup=2.246, accuracy=cos(0.9962, 0.004)),
    case(
        "pi5",
        "int4-weight",
        "unsupported",
        error="int4-weight needs onnxruntime >= 1.17; the board has 1.16.3",
    ),
    case("jetson-orin-nano", "fp32", p50=9.8, threads=6, provider="CUDAExecutionProvider",
         speedup=1.0),
    case("jetson-orin-nano", "fp16", p50=5.3, threads=6, provider="CUDAExecutionProvider",
         speedup=1.849),
    case("jetson-orin-nano", "int8-dynamic", p50=12.4, threads=6,
         provider="CUDAExecutionProvider", speedup=0.7903),
    case("jetson-orin-nano", "int8-static", "failed", threads=6,
         provider="CUDAExecutionProvider",
         error="agent: session load failed: CUDA out of memory\n(allocating 512 MiB)"),
    case("jetson-orin-nano", "fp32", p50=71.3, threads=6, speedup=1.0),
    case("rk3588", "fp32", p50=61.2, speedup=1.0, flags=["throttled"]),
    case("rk3588", "int8-dynamic", p50=33.0, speedup=1.8545, flags=["loaded"],
         accuracy=cos(0.9951, 0.005)),
    case("rk3588", "int8-static", p50=25.3, speedup=2.419, accuracy=cos(0.9957, 0.004)),
    case("rk3588", "int4-weight", "not run", size_bytes=None,
         error="the run was interrupted (SIGINT)"),
]  # fmt: skip


def by_key(cases: list[Any]) -> list[tuple[str, str, str]]:
    return [(c["device"], c["variant"], c["provider"]) for c in cases]


# --- table ------------------------------------------------------------------------------------


def test_terminal_table_rows() -> None:
    lines = report.terminal_table(CASES).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == list(report.TABLE_HEADERS)
    cells = [re.split(r"\s{2,}", line) for line in lines[1:]]
    assert len(cells) == len(CASES)
    # Presentation order: devices as given, then provider, threads and the variants' order.
    assert [(c[0], c[1], c[3]) for c in cells] == [
        ("pi5", "fp32", "CPU"),
        ("pi5", "fp16", "CPU"),
        ("pi5", "int8-dynamic", "CPU"),
        ("pi5", "int8-static", "CPU"),
        ("pi5", "int4-weight", "CPU"),
        ("jetson-orin-nano", "fp32", "CUDA"),
        ("jetson-orin-nano", "fp16", "CUDA"),
        ("jetson-orin-nano", "int8-dynamic", "CUDA"),
        ("jetson-orin-nano", "int8-static", "CUDA"),
        ("jetson-orin-nano", "fp32", "CPU"),
        ("rk3588", "fp32", "CPU"),
        ("rk3588", "int8-dynamic", "CPU"),
        ("rk3588", "int8-static", "CPU"),
        ("rk3588", "int4-weight", "CPU"),
    ]
    # ±CI: (19.074 - 18.326) / 2 / 18.7 = 2.0 %; throughput 1000 / 18.7 = 53.48 per second.
    assert cells[3] == [
        "pi5", "int8-static", "4", "CPU", "18.7 ms", "±2.0%", "22.6 ms", "53.5/s", "2.25x",
        "3.43 MiB", "cos 0.9962, drop 0.40 pt",
    ]  # fmt: skip
    assert cells[0][4:11] == [
        "42.0 ms", "±1.0%", "50.8 ms", "23.8/s", "1.00x", "13.3 MiB", "cos 1.0000, drop 0.00 pt",
    ]  # fmt: skip
    assert cells[10][4:] == [
        "61.2 ms", "±1.0%", "74.1 ms", "16.3/s", "1.00x", "13.3 MiB", "throttled",
    ]  # fmt: skip
    assert cells[11][-2:] == ["cos 0.9951, drop 0.50 pt", "loaded"]


def test_terminal_table_cases_without_measurement() -> None:
    lines = report.terminal_table(CASES).splitlines()
    unsupported = re.split(r"\s{2,}", lines[5])
    assert unsupported == [
        "pi5", "int4-weight", "4", "CPU", "-", "-", "-", "-", "-", "2.19 MiB",
        "unsupported: int4-weight needs onnxruntime >= 1.17; the board has 1.16.3",
    ]  # fmt: skip
    # An error keeps its first line only; a case without a file shows "-" for its size.
    failed = re.split(r"\s{2,}", lines[9])
    assert failed[4:] == [
        "-", "-", "-", "-", "-", "3.43 MiB",
        "failed: agent: session load failed: CUDA out of memory",
    ]  # fmt: skip
    assert re.split(r"\s{2,}", lines[14])[4:] == [
        "-", "-", "-", "-", "-", "-", "not run: the run was interrupted (SIGINT)",
    ]  # fmt: skip


def test_terminal_table_shortens_errors_and_neutralises_control_characters() -> None:
    cases = [
        case("pi\x1b[31mred", "fp32", "failed", error="x" * 100),
        case("pi4", "fp16", p50=0.0123, provider="TensorrtExecutionProvider"),
        case("pi4", "int8-static", p50=250.4, provider="MyVendorExecutionProvider"),
    ]
    text = report.terminal_table(cases)
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[1].startswith("pi?[31mred  fp32")
    assert lines[1].endswith("failed: " + "x" * 59 + "…")
    assert re.split(r"\s{2,}", lines[2])[3:5] == ["TensorRT", "0.0123 ms"]
    assert re.split(r"\s{2,}", lines[3])[3:5] == ["MyVendor", "250 ms"]


def test_terminal_table_of_nothing_is_its_header() -> None:
    assert report.terminal_table([]) == "  ".join(report.TABLE_HEADERS)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "done"}, "case 0 (pi5/fp32): unknown status 'done'"),
        ({"device": None}, "case 0: 'device' must be a string, got None"),
        ({"p50_ms": None}, "case 0 (pi5/fp32): an ok case needs a positive p50_ms, got None"),
        ({"p50_ms": float("nan")}, "an ok case needs a positive p50_ms, got None"),
        ({"p50_ms": "42"}, "case 0 (pi5/fp32): 'p50_ms' must be a number, got '42'"),
        ({"size_bytes": None}, "case 0 (pi5/fp32): an ok case needs size_bytes"),
        ({"threads": 4.0}, "'threads' must be an integer, got 4.0"),
        ({"threads": True}, "'threads' must be an integer, got True"),
        ({"flags": "throttled"}, "'flags' must be a list of strings, got 'throttled'"),
        ({"accuracy": 0.99}, "'accuracy' must be a dict, got 0.99"),
        ({"accuracy": {"cosine": "high"}}, "'accuracy.cosine' must be a number, got 'high'"),
    ],
)
def test_bad_case_is_refused_by_name(change: dict[str, Any], message: str) -> None:
    bad = {**CASES[0], **change}
    for fn in (report.terminal_table, report.to_records, report.pareto):
        with pytest.raises(ValueError, match=re.escape(message)):
            fn([bad])


def test_missing_key_is_refused() -> None:
    bad = dict(CASES[1])
    del bad["status"]
    with pytest.raises(ValueError, match=r"^case 1: 'status' must be a string, got None$"):
        report.terminal_table([CASES[0], bad])


def test_optional_keys_may_be_missing() -> None:
    minimal = {"device": "pi4", "variant": "fp32", "threads": 4, "provider": "CPUExecutionProvider",
               "status": "ok", "p50_ms": 80.0, "size_bytes": 2 * MIB}  # fmt: skip
    [record] = report.to_records([minimal])
    assert record["flags"] == [] and record["accuracy"] is None and record["speedup"] is None
    assert record["ci_percent"] is None and record["pareto"] is True
    assert re.split(r"\s{2,}", report.terminal_table([minimal]).splitlines()[1]) == [
        "pi4", "fp32", "4", "CPU", "80.0 ms", "-", "-", "-", "-", "2.00 MiB",
    ]  # fmt: skip


# --- Pareto front -----------------------------------------------------------------------------


def test_pareto_per_device() -> None:
    front = report.pareto(CASES)
    assert by_key(front) == [
        # pi5 is validated: fp16 stays (more accurate than the int8 variants that beat it on
        # size and speed); int8-dynamic goes (int8-static is smaller, faster, more accurate).
        ("pi5", "fp32", "CPUExecutionProvider"),
        ("pi5", "fp16", "CPUExecutionProvider"),
        ("pi5", "int8-static", "CPUExecutionProvider"),
        # No accuracy: fp16 beats fp32 on both; int8-dynamic is smaller than fp16, but slower.
        # fp32 on the CPU loses to fp32 on CUDA (same size, slower).
        ("jetson-orin-nano", "fp16", "CUDAExecutionProvider"),
        ("jetson-orin-nano", "int8-dynamic", "CUDAExecutionProvider"),
        # fp32 was not validated, so accuracy does not count: int8-static beats the rest.
        ("rk3588", "int8-static", "CPUExecutionProvider"),
    ]
    # The caller's own objects come back.
    assert all(any(f is c for c in CASES) for f in front)


def test_pareto_over_the_fleet() -> None:
    # Across boards the Jetson's CUDA cases are fastest; accuracy does not count (not all have
    # it), so the smallest-but-slower int8-static cases of pi5 and rk3588 survive only if no
    # case is both smaller and faster: pi5's int8-static (3.43 MiB, 18.7 ms) beats rk3588's.
    front = report.pareto(CASES, per_device=False)
    assert by_key(front) == [
        ("pi5", "int8-static", "CPUExecutionProvider"),
        ("jetson-orin-nano", "fp16", "CUDAExecutionProvider"),
        ("jetson-orin-nano", "int8-dynamic", "CUDAExecutionProvider"),
    ]


def test_pareto_uses_accuracy_drop_when_there_is_no_cosine() -> None:
    cases = [
        case("pi5", "int8-dynamic", p50=24.1, accuracy={"accuracy_drop": 0.002}),
        case("pi5", "int8-static", p50=18.7, accuracy={"accuracy_drop": 0.030}),
        case("pi5", "fp16", p50=30.0, accuracy={"accuracy_drop": 0.002}),
    ]
    # int8-dynamic loses 0.2 points, static 3: both stay; fp16 is beaten by int8-dynamic.
    assert by_key(report.pareto(cases)) == by_key(cases[:2])


def test_pareto_keeps_ties_and_skips_cases_not_ok() -> None:
    twin = case("pi5", "int8-static", p50=18.7, run="run-2")
    cases = [case("pi5", "int8-static", p50=18.7), twin, case("pi5", "fp32", "failed")]
    assert report.pareto(cases) == cases[:2]
    assert report.pareto([case("pi5", "fp32", "failed")]) == []
    assert report.pareto([]) == []


# --- CSV and records ---------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    cases = [*CASES, case("pi5", "fp16", p50=50.0, accuracy={"cosine": 0.999, "top1": 0.91})]
    report.write_csv(cases, path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*report.CSV_COLUMNS, "accuracy_top1"]
    assert len(rows) == len(cases)
    assert rows[3] == {
        "run": "run-20251129-1", "device": "pi5", "variant": "int8-static", "threads": "4",
        "provider": "CPUExecutionProvider", "status": "ok", "error": "", "p50_ms": "18.7",
        "p90_ms": "19.822", "p99_ms": "22.627", "mean_ms": "19.074", "std_ms": "0.748",
        "ci_low_ms": "18.326", "ci_high_ms": "19.074", "samples": "200",
        "throughput": "53.48", "size_bytes": "3598336", "speedup": "2.246",
        "accuracy_cosine": "0.9962", "accuracy_drop": "0.004", "flags": "", "pareto": "true",
        "accuracy_top1": "",
    }  # fmt: skip
    # Every number reads back as the value given.
    for row, given in zip(rows, cases, strict=True):
        for key in ("p50_ms", "p99_ms", "ci_low_ms", "throughput", "speedup"):
            assert (float(row[key]) if row[key] else None) == given[key]
        assert (int(row["size_bytes"]) if row["size_bytes"] else None) == given["size_bytes"]
    failed = rows[8]
    assert failed["status"] == "failed" and failed["p50_ms"] == "" and failed["pareto"] == "false"
    assert failed["error"] == "agent: session load failed: CUDA out of memory\n(allocating 512 MiB)"
    assert rows[11]["flags"] == "loaded" and rows[2]["pareto"] == "false"
    assert rows[-1]["accuracy_top1"] == "0.91" and rows[-1]["accuracy_drop"] == ""


def test_csv_joins_flags_and_keeps_user_text(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    report.write_csv(
        [case('pi "5", rack;2', "fp32", p50=40.0, flags=["throttled", "partial"])], path
    )
    [row] = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert row["device"] == 'pi "5", rack;2'
    assert row["flags"] == "throttled;partial"


def test_csv_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    report.write_csv(
        [case('=HYPERLINK("http://127.0.0.1/x","pi")', "fp32", p50=40.0),
         case("@SUM(A1)", "fp32", p50=41.0), case("pi-4", "fp32", p50=42.0)], path,
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["device"] for r in rows] == ["'=HYPERLINK(\"http://127.0.0.1/x\",\"pi\")",
                                           "'@SUM(A1)", "pi-4"]  # fmt: skip
    assert [r["p50_ms"] for r in rows] == ["40.0", "41.0", "42.0"]


def test_records_are_json_ready() -> None:
    cases = [*CASES, case("pi4", "fp32", p50=80.0, std_ms=float("nan"), speedup=float("inf"))]
    records = report.to_records(cases)
    text = json.dumps(records, allow_nan=False)
    back = json.loads(text)
    assert back[3] == {
        **CASES[3], "ci_percent": pytest.approx(2.0, abs=1e-9), "pareto": True,
    }  # fmt: skip
    assert back[2]["pareto"] is False
    assert back[-1]["std_ms"] is None and back[-1]["speedup"] is None
    assert [r["pareto"] for r in records].count(True) == 7  # the 6 of CASES, and pi4's only case


# --- PNG --------------------------------------------------------------------------------------


def pixels(data: bytes) -> np.ndarray:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_plot_writes_a_png_of_three_panels(tmp_path: Path) -> None:
    path = tmp_path / "bench.png"
    report.plot(CASES, path)
    image = pixels(path.read_bytes())
    assert image.shape == (1400, 1200, 3)
    assert image.std() > 30  # not blank: bars, text and a colour scale
    colours = {tuple(p) for p in image.reshape(-1, 3)[::7]}
    assert len(colours) > 200
    # The variants' colours are there: fp32 blue, fp16 orange, int8-dynamic green.
    for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):
        assert (np.abs(image.astype(int) - rgb).sum(axis=2) < 6).sum() > 500, rgb
    # Same cases, same bytes (no date, no software version in the file).
    assert report.render_png(CASES) == path.read_bytes()
    assert b"tIME" not in path.read_bytes() and b"matplotlib" not in path.read_bytes()


def test_plot_of_nothing_ok_says_so(tmp_path: Path) -> None:
    path = tmp_path / "none.png"
    report.plot([c for c in CASES if c["status"] != "ok"], path)
    image = pixels(path.read_bytes())
    assert image.shape == (300, 1200, 3)
    dark = (image.sum(axis=2) < 200).sum()
    assert dark > 1000  # the sentence is written
    assert report.render_png([]) != path.read_bytes()  # and it says what happened


def test_plot_survives_awkward_names_and_values(tmp_path: Path) -> None:
    cases = [
        case("a$x^2$b", "fp32", p50=40.0, speedup=1.0),
        case("unbalanced $ name", "fp32", p50=0.4, speedup=1.0),
        case("板-1 " + "very long device name " * 4, "fp16", p50=4000.0),
        case("pi5", "my-own-variant", p50=20.0, accuracy={"cosine": 0.97}),
    ]
    path = tmp_path / "odd.png"
    report.plot(cases, path, title="<b>$weird$</b>")  # warnings are errors in the tests
    assert pixels(path.read_bytes()).shape == (1400, 1200, 3)


def test_plot_without_fp32_has_no_speedups(tmp_path: Path) -> None:
    cases = [case("pi5", "int8-static", p50=18.7), case("pi5", "fp16", p50=55.0)]
    report.plot(cases, tmp_path / "p.png")
    assert pixels((tmp_path / "p.png").read_bytes()).std() > 20


# --- HTML -------------------------------------------------------------------------------------

META = {"model": "mobilenetv2-12.onnx", "date": "2025-11-29 14:30 UTC",
        "edgeopt": "0.1.0", "host CPU": "AMD Ryzen 9 7950X (32 threads)"}  # fmt: skip


def test_html_page(tmp_path: Path) -> None:
    path = tmp_path / "bench.html"
    report.write_html(CASES, path, "Benchmark of mobilenetv2-12", META)
    text = path.read_text(encoding="utf-8")
    assert text.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert "<title>Benchmark of mobilenetv2-12</title>" in text
    assert (
        "<dt>model</dt><dd>mobilenetv2-12.onnx</dd>\n<dt>date</dt><dd>2025-11-29 14:30 UTC</dd>"
        in text
    )
    assert "<dt>host CPU</dt><dd>AMD Ryzen 9 7950X (32 threads)</dd>" in text
    assert "14 cases: 11 ok, 1 unsupported, 1 failed, 1 not run." in text
    rows = re.findall(r"<tr class=\"([^\"]+)\">(.*?)</tr>", text, re.S)
    assert len(rows) == len(CASES)
    assert [r[0] for r in rows[:5]] == ["ok pareto", "ok pareto", "ok", "ok pareto", "unsupported"]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[3][1])
    assert cells[:6] == [
        "pi5", 'int8-static <span title="on its device\'s Pareto front">★</span>', "4", "CPU",
        "18.7 ms", "±2.0%",
    ]  # fmt: skip
    # The whole error, escaped; flags as badges.
    assert (
        '<span class="status">failed</span>: agent: session load failed: CUDA out of memory\n'
        "(allocating 512 MiB)" in text
    )
    assert '<span class="flag warn">throttled</span>' in text
    # The PNG of `plot`, inline.
    [data] = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    import base64

    assert base64.b64decode(data) == report.render_png(CASES)
    assert 'width="1200" height="1400"' in text


def test_html_loads_nothing_from_outside(tmp_path: Path) -> None:
    path = tmp_path / "bench.html"
    report.write_html(CASES, path, "t", META)
    # The one image's base64 may hold "//" by chance: look at the page around it.
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", path.read_text(encoding="utf-8"))
    assert not re.search(r"(?i)https?:|//|\bftp:|\bfile:", text)
    assert re.findall(r'(?i)\b(?:src|href)\s*=\s*"([^"]{0,22})', text) == [
        "data:,", "data:image/png;base64,",
    ]  # fmt: skip
    assert "url(" not in text and "@import" not in text and "<script" not in text.lower()
    assert "Content-Security-Policy" in text


def test_html_escapes_user_text(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    cases = [
        case(evil, "fp32", p50=10.0, flags=['"><img src=x onerror=alert(2)>']),
        case("pi5", "fp16", "failed", error="<b>bold</b> & 'quotes'"),
    ]
    path = tmp_path / "evil.html"
    report.write_html(cases, path, f"title {evil}", {evil: evil})
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text and "<img src=x" not in text and "<b>" not in text
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in text
    assert "<title>title &lt;script&gt;alert(1)&lt;/script&gt;</title>" in text
    assert "<dt>&lt;script&gt;alert(1)&lt;/script&gt;</dt>" in text
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quotes&#x27;" in text


def test_html_of_nothing_ok(tmp_path: Path) -> None:
    path = tmp_path / "none.html"
    report.write_html([case("pi5", "fp32", "failed", error="boom")], path, "t", {})
    text = path.read_text(encoding="utf-8")
    assert "1 case: 1 failed." in text
    assert "<dl" not in text  # no metadata, no empty list
    assert 'width="1200" height="300" alt="No successful benchmark case to plot"' in text


def test_the_report_loads_matplotlib_only_to_draw() -> None:
    """The package imports its chart module eagerly; matplotlib itself waits for a chart."""
    code = (
        "import sys\n"
        "from edgeopt.host import report\n"
        "print('matplotlib' in sys.modules, callable(report.plot))\n"
        "report.render_png([])\n"
        "print('matplotlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "False True\nTrue\n", "")


def test_providers_have_one_short_name_in_every_report() -> None:
    from edgeopt.host.report import op_profile

    assert [report.short_provider(p) for p in (
        "CPUExecutionProvider", "TensorrtExecutionProvider", "DmlExecutionProvider",
        "FooExecutionProvider", "",
    )] == ["CPU", "TensorRT", "DirectML", "Foo", ""]  # fmt: skip
    agg = {
        "run_ms": 2.0, "node_ms": 1.5,
        "nodes": [
            {"node": "conv", "op_type": "Conv", "provider": "TensorrtExecutionProvider",
             "calls": 1, "mean_ms": 1.0, "share": 0.75},
            {"node": "nms", "op_type": "NonMaxSuppression", "provider": "CPUExecutionProvider",
             "calls": 1, "mean_ms": 0.5, "share": 0.25},
        ],
        "op_types": [
            {"op_type": "Conv", "provider": "TensorrtExecutionProvider", "nodes": 1,
             "total_ms": 1.0, "share": 0.75},
            {"op_type": "NonMaxSuppression", "provider": "CPUExecutionProvider", "nodes": 1,
             "total_ms": 0.5, "share": 0.25},
        ],
    }  # fmt: skip
    text = op_profile.report(agg, top=5, requested="TensorrtExecutionProvider")
    assert text.splitlines()[3].split() == ["conv", "Conv", "TensorRT", "1", "1", "ms", "75.0%"]
    assert text.splitlines()[-1] == (
        "1 node(s) fell back to the CPU from TensorRT: nms (NonMaxSuppression)"
    )
    table = report.terminal_table(
        [case("pi", "fp32", p50=1.0, provider="TensorrtExecutionProvider")]
    )
    assert table.splitlines()[1].split()[:4] == ["pi", "fp32", "4", "TensorRT"]
