"""Sweeps under faults: damaged result files, bad specs and paths, a killed parent (issue 13, items 5 and 10)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pcpemu.errors import OutputPathError, SweepSpecError
from pcpemu.tools import cli
from pcpemu.tools.sweep import parse_spec, run_sweep, summarize
from pcpemu.tools.sweepstore import JsonLinesStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = {"measure": "workload", "params": {"memory": "16M", "ops": 200, "live": 16}, "axes": {"seed": [1, 2, 3]}}


def _dead(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[1] == "Z" for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return True


# ---- item 5: pool workers die with the sweep ----

_KILLED_SWEEP = """
import os, sys, time
sys.path.insert(0, {root!r})
from pcpemu.tools.sweep import KINDS, Kind, parse_spec, run_sweep

def sleepy(params):
    open(os.path.join({pids!r}, str(os.getpid())), "w").close()
    time.sleep(120)
    return {{}}

KINDS["sleepy"] = Kind("sleepy", sleepy, {{"n": 0}}, lambda p: None)
spec = parse_spec({{"measure": "sleepy", "axes": {{"n": [1, 2]}}}})
run_sweep(spec, {out!r}, executor="processes", workers=2, chunk=1)
"""


def test_pool_workers_exit_when_the_sweep_is_killed(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "sweep.py"
    script.write_text(_KILLED_SWEEP.format(root=ROOT, pids=str(pids), out=str(tmp_path / "r.jsonl")))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while len(os.listdir(pids)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    workers = [int(p) for p in os.listdir(pids)]
    assert len(workers) == 2, "the workers did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while not all(_dead(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [w for w in workers if not _dead(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert alive == [], "pool workers outlived the killed sweep"


# ---- item 10: result files that hold more than records ----

def _run(out, **kw):
    return run_sweep(parse_spec(SPEC), str(out), executor="inline", **kw)


@pytest.mark.parametrize("junk", [
    b'{"key": "torn", "sta\n',                    # a torn record followed by a newline
    b"\x00\xff garbage \n",
    b"\n",                                        # a blank line
    b"   \n",
    b'{"status": "ok", "params": {}}\n',          # a record without key
    b'["key", "status"]\n',                       # a JSON array
    b'{"key": 5, "status": "ok"}\n',
    b'{"key": "k", "status": "ok", "result": [1]}\n',
    b"null\n",
], ids=["torn", "garbage", "blank", "spaces", "no-key", "array", "int-key", "list-result", "null"])
def test_resume_skips_and_reports_lines_without_a_record(tmp_path, junk):
    out = tmp_path / "r.jsonl"
    first = _run(out)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0] + junk + b"".join(lines[1:]) + junk)
    before = out.read_bytes()
    again = _run(out)
    assert (again.ran, again.skipped, again.unreadable) == (0, 3, [2, 5])
    assert out.read_bytes() == before                           # not rewritten unless asked
    assert "2 line(s) of" in summarize(again, parse_spec(SPEC))
    assert [r["key"] for r in again.records] == [r["key"] for r in first.records]
    dropped = _run(out, drop_unreadable=True)
    assert dropped.unreadable == [2, 5] and dropped.ran == 0
    # Nothing to append, so nothing rewritten yet; a retry appends and rewrites.
    spec = dict(SPEC, axes={"seed": [1, 2, 3, 4]})
    grown = run_sweep(parse_spec(spec), str(out), executor="inline", drop_unreadable=True)
    assert grown.ran == 1 and grown.unreadable == [2, 5]
    store = JsonLinesStore(str(out))
    assert len(store.read()) == 4 and store.unreadable == []


def test_cli_resume_names_the_unreadable_lines(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('measure = "workload"\n[params]\nmemory = "16M"\nops = 200\nlive = 16\n[axes]\nseed = [1, 2]\n')
    out = tmp_path / "s.jsonl"
    assert cli.main(["sweep", str(spec), "-o", str(out), "--no-progress"]) == 0
    with open(out, "ab") as f:
        f.write(b"garbage\n")
    capsys.readouterr()
    assert cli.main(["sweep", str(spec), "-o", str(out), "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    assert "1 line(s) of" in captured.err and "(line 3)" in captured.err
    assert json.loads(captured.out)["outcome"]["unreadable"] == [3]


def test_output_naming_a_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(OutputPathError, match="is a directory"):
        _run(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text('measure = "workload"\n[axes]\nseed = [1]\n')
    assert cli.main(["sweep", str(spec), "-o", str(tmp_path), "--no-progress"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcpemu sweep: error: result file") and "is a directory" in err[0]


@pytest.mark.parametrize("spec, message", [
    ({"measure": ["workload"]}, "measure ['workload'] is not one of"),
    ({"measure": {"a": 1}}, "is not one of"),
    ({"params": {"ops": 10}}, "no measure"),
    ({"measure": "workload", "params": {"policy": "split", "preset": "v6.9"}}, "give 'policy' or 'preset'"),
    ({"measure": "workload", "params": {"policy": "split"}, "axes": {"preset": ["v6.9"]}}, "not both"),
    ({"measure": "workload", "params": {"ops": 10**12}}, "ops: 1000000000000 is above the limit"),
    ({"measure": "workload", "params": {"live": 10**9}}, "live: 1000000000 is above the limit"),
    ({"measure": "contention", "params": {"ops_per_cpu": 10**9}}, "above the limit"),
], ids=["list", "table", "missing", "policy-preset", "policy-preset-axis", "ops", "live", "contention-ops"])
def test_spec_errors_are_sweep_spec_errors(spec, message):
    with pytest.raises(SweepSpecError, match="s.toml: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(spec, "s.toml")
