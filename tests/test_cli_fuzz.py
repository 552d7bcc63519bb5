"""The CLI under bad input: one-line errors, exit codes, JSON error documents, no file changed
(issue 13: items 11, 12, 13 and the CLI fuzz suite)."""

import gzip
import json
import lzma
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcpemu.tools import cli
from test_replay import DATA, alloc, free, line

ZONEINFO = str(DATA / "zoneinfo-2cpu.txt")


def _trace(n=40, extra=""):
    text = "".join(alloc(0, 1.0 + i * 1e-6, 0x100000 + 2 * i) for i in range(n))
    text += "".join(free(0, 1.1 + i * 1e-6, 0x100000 + 2 * i) for i in range(n))
    return (text + extra).encode()


def _run(capsys, argv):
    """(exit code, stdout, stderr lines) of one CLI call."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def _error(capsys, argv, code=cli.EXIT_ERROR, cls=None):
    # The text form: exactly one line naming the verb; the JSON form: the error document.
    verb = argv[0]
    got, out, err = _run(capsys, argv)
    assert got == code and out == ""
    assert len(err) == 1 and err[0].startswith(f"pcpemu {verb}: error: "), err
    got, out, err = _run(capsys, argv + ["--json"])
    doc = json.loads(out)
    assert got == code and doc["command"] == verb and set(doc["error"]) == {"type", "message"}
    assert "\n" not in doc["error"]["message"]
    if cls:
        assert doc["error"]["type"] == cls
    return doc["error"]["message"]


# ---- item 11: files that are tracebacks today ----

def test_replay_zoneinfo_missing_binary_or_nul(tmp_path, capsys):
    trace = tmp_path / "t.txt"
    trace.write_bytes(_trace())
    binary = tmp_path / "zoneinfo.bin"
    binary.write_bytes(bytes(range(256)))
    nul = tmp_path / "zoneinfo.nul"
    nul.write_text(open(ZONEINFO).read().replace("pages free", "pages\x00free", 1))
    assert str(tmp_path / "no") in _error(capsys, ["replay", str(trace), "--zoneinfo", str(tmp_path / "no")])
    assert "not a text file" in _error(capsys, ["replay", str(trace), "--zoneinfo", str(binary)])
    assert "NUL byte" in _error(capsys, ["replay", str(trace), "--zoneinfo", str(nul)])


@pytest.mark.parametrize("kind", ["xz-truncated", "xz-corrupt", "gz-truncated", "gz-corrupt"])
def test_replay_truncated_or_corrupt_compressed_traces(tmp_path, capsys, kind):
    data = _trace(2000)
    packed = lzma.compress(data) if kind.startswith("xz") else gzip.compress(data)
    if kind.endswith("truncated"):
        packed = packed[: len(packed) // 2]
    else:
        packed = packed[:30] + bytes(b ^ 0x5A for b in packed[30:60]) + packed[60:]
    path = tmp_path / f"t.{kind[:2]}"
    path.write_bytes(packed)
    message = _error(capsys, ["replay", str(path), "--zones", "normal", "--memory", "8G"], cls="TraceFormatError")
    assert str(path) in message and "compressed data" in message


# ---- item 12: usage errors ----

@pytest.mark.parametrize("argv", [
    ["repro", "--policy", "splt"],
    ["repro", "--memory", "8Q"],
    ["report", "--memory", "1X"],
    ["replay", "t.txt", "--cma", "3Z"],
    ["replay"],
    ["sweep", "s.toml", "--workers", "many"],
])
def test_usage_errors_exit_2_with_a_json_document(capsys, argv):
    got, out, err = _run(capsys, argv)
    assert got == cli.EXIT_USAGE and out == "" and err[-1].startswith(f"pcpemu {argv[0]}: error: ")
    got, out, err = _run(capsys, argv + ["--json"])
    doc = json.loads(out)
    assert got == cli.EXIT_USAGE and doc["command"] == argv[0] and doc["error"]["type"] == "UsageError"


# ---- item 13: replay tells what it could not read ----

def test_random_bytes_are_an_error_not_an_empty_replay(tmp_path, capsys):
    path = tmp_path / "random.bin"
    path.write_bytes(random.Random(1).randbytes(1 << 20))
    message = _error(capsys, ["replay", str(path)], cls="TraceFormatError")
    assert "no kmem page-allocator event in" in message


def test_non_event_lines_are_reported_in_text_and_json(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_bytes(_trace(extra="garbage line\n" * 7 + "\x00\xff\n"))
    got, out, _ = _run(capsys, ["replay", str(path), "--zones", "normal", "--memory", "8G"])
    assert got == 0 and "warning: 8 of 88 lines are not trace event lines" in out
    got, out, _ = _run(capsys, ["replay", str(path), "--zones", "normal", "--memory", "8G", "--json"])
    doc = json.loads(out)
    assert doc["skipped_lines"]["not an event line"] == 8 and doc["lines"] == 88


def test_strict_quotes_at_most_a_short_piece_of_a_huge_line(tmp_path, capsys):
    path = tmp_path / "t.txt"
    huge = line(0, 2.0, "mm_page_alloc", "page=00000000deadbeef pfn=0x5 order=0 migratetype=0 gfp_flags="
                + "GFP_KERNEL|" * 200_000 + "NOPE")
    path.write_bytes(_trace(extra=huge))
    message = _error(capsys, ["replay", str(path), "--zones", "normal", "--memory", "8G", "--strict"])
    assert len(message) < 600 and "bytes)" in message


@pytest.mark.parametrize("fields", [
    "order=11 migratetype=0 gfp_flags=GFP_KERNEL",
    "order=99 migratetype=0 gfp_flags=GFP_KERNEL",
    "order=0 migratetype=0 gfp_flags=GFP_KERNEL|__GFP_MOVABLE|__GFP_RECLAIMABLE",
    "order=0 migratetype=0 gfp_flags=0x18",
])
def test_one_rule_for_bad_orders_and_gfps_malformed_or_strict_error(tmp_path, capsys, fields):
    path = tmp_path / "t.txt"
    path.write_bytes(_trace(extra=line(0, 2.0, "mm_page_alloc", f"page=00000000deadbeef pfn=0x400 {fields}")))
    argv = ["replay", str(path), "--zones", "normal", "--memory", "8G"]
    got, out, _ = _run(capsys, argv + ["--json"])
    doc = json.loads(out)
    assert got == 0 and sum(doc["malformed"].values()) == 1 and doc["replayed"]["alloc"] == 40
    assert "line 81" in _error(capsys, argv + ["--strict"], cls="TraceFormatError")


# ---- the CLI fuzz suite ----

_LINE = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" ") + b"\n"),
    st.builds(lambda cpu, pfn, order, gfp: line(cpu, 1.0, "mm_page_alloc",
                                                f"page=00000000deadbeef pfn={pfn:#x} order={order} "
                                                f"migratetype=0 gfp_flags={gfp}").encode(),
              st.integers(0, 70000), st.integers(0, 1 << 40), st.integers(0, 200),
              st.sampled_from(["GFP_KERNEL", "0x18", "0xffffffff", "NOPE", "", "GFP_KERNEL|__GFP_COMP"])),
    st.builds(lambda cpu, pfn, order: free(cpu, 1.0, pfn, order).encode(),
              st.integers(0, 70000), st.integers(0, 1 << 40), st.integers(0, 200)),
)


@settings(max_examples=int(os.environ.get("PCPEMU_FUZZ_CLI_EXAMPLES", 25)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(_LINE, max_size=30), packing=st.sampled_from(["plain", "gz", "xz", "cut-gz", "cut-xz"]),
       strict=st.booleans())
def test_fuzz_replay_of_malformed_traces(tmp_path_factory, capsys, lines, packing, strict):
    data = _trace(5) + b"".join(lines)
    if packing != "plain":
        data = (gzip.compress if packing.endswith("gz") else lzma.compress)(data)
        if packing.startswith("cut"):
            data = data[: len(data) * 2 // 3]
    path = tmp_path_factory.mktemp("fuzz") / "trace"
    path.write_bytes(data)
    argv = ["replay", str(path), "--zones", "normal", "--memory", "256M", "--cpus", "2", "--json"]
    got, out, _ = _run(capsys, argv + (["--strict"] if strict else []))
    doc = json.loads(out)
    assert got in (cli.EXIT_OK, cli.EXIT_ERROR)
    if got == cli.EXIT_ERROR:
        assert doc["error"]["type"] in ("TraceFormatError", "ConfigError") and "\n" not in doc["error"]["message"]
    else:
        assert doc["events_read"] >= 10
    assert path.read_bytes() == data


@settings(max_examples=int(os.environ.get("PCPEMU_FUZZ_CLI_EXAMPLES", 25)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 4000), noise=st.binary(max_size=40))
def test_fuzz_replay_zoneinfo_files(tmp_path_factory, capsys, cut, noise):
    text = open(ZONEINFO, "rb").read()
    data = text[:cut] + noise + text[cut + len(noise):]
    d = tmp_path_factory.mktemp("zi")
    (d / "zoneinfo").write_bytes(data)
    (d / "t.txt").write_bytes(_trace(5))
    got, out, _ = _run(capsys, ["replay", str(d / "t.txt"), "--zoneinfo", str(d / "zoneinfo"), "--json"])
    doc = json.loads(out)
    assert got in (cli.EXIT_OK, cli.EXIT_ERROR)
    if got == cli.EXIT_ERROR:
        assert doc["error"]["type"] in ("TraceFormatError", "ConfigError")
    assert (d / "zoneinfo").read_bytes() == data


_SPEC_VALUES = st.one_of(st.integers(-3, 10**13), st.text(max_size=6), st.booleans(), st.none(),
                         st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                   st.integers(), max_size=2))


@settings(max_examples=int(os.environ.get("PCPEMU_FUZZ_CLI_EXAMPLES", 25)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=st.dictionaries(st.sampled_from(["measure", "params", "axes", "chunk", "junk"]),
                            st.one_of(_SPEC_VALUES, st.dictionaries(
                                st.sampled_from(["ops", "live", "seed", "memory", "cpus", "policy", "preset",
                                                 "workload", "trace", "nope"]), _SPEC_VALUES, max_size=3)),
                            max_size=4),
       result_lines=st.lists(st.binary(max_size=40), max_size=4))
def test_fuzz_sweep_specs_and_result_files(tmp_path_factory, capsys, spec, result_lines):
    d = tmp_path_factory.mktemp("sw")
    (d / "s.yaml").write_text(json.dumps(spec))
    results = b"".join(x.replace(b"\n", b" ") + b"\n" for x in result_lines)
    (d / "s.jsonl").write_bytes(results)
    pytest.importorskip("yaml")
    got, out, _ = _run(capsys, ["sweep", str(d / "s.yaml"), "-o", str(d / "s.jsonl"), "--executor", "inline",
                                "--no-progress", "--json"])
    doc = json.loads(out)
    if got != cli.EXIT_OK:
        assert got == cli.EXIT_ERROR and doc["error"]["type"] == "SweepSpecError"
        assert (d / "s.jsonl").read_bytes() == results          # refused before anything was written
    else:
        assert (d / "s.jsonl").read_bytes().startswith(results)  # appended to, nothing rewritten


@settings(max_examples=int(os.environ.get("PCPEMU_FUZZ_CLI_EXAMPLES", 25)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["file", "foreign", "missing-parent", "nested-file"]), content=st.binary(max_size=20))
def test_fuzz_output_paths(tmp_path_factory, capsys, kind, content):
    from pcpemu.tools import report

    d = tmp_path_factory.mktemp("out")
    target = d / "out"
    if kind == "file":
        target.write_bytes(content)
    elif kind == "foreign":
        target.mkdir()
        (target / "x").write_bytes(content)
    elif kind == "missing-parent":
        target = d / "missing" / "out"
    else:
        (d / "f").write_bytes(content)
        target = d / "f" / "out"
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    saved, report.build_report = report.build_report, None      # reaching it would be a TypeError
    try:
        message = _error(capsys, ["report", "--quick", "-o", str(target)], cls="OutputPathError")
    finally:
        report.build_report = saved
    assert str(target) in message
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before
