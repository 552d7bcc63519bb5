"""Report output paths: checked before any work, replaced in one step, umask kept (issue 13, items 2 and 3)."""

import json
import os
import stat
import subprocess
import sys

import pytest

from pcpemu.errors import OutputPathError
from pcpemu.tools import cli, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REP = {"pcpemu_schema": 1}


def _no_simulation(monkeypatch):
    monkeypatch.setattr(report, "build_report", lambda *a, **k: pytest.fail("the simulation ran"))


# ---- item 2: what -o may name ----

def test_report_refuses_an_existing_file_before_any_work(tmp_path, monkeypatch, capsys):
    _no_simulation(monkeypatch)
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    assert cli.main(["report", "--quick", "-o", str(target)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcpemu report: error: -o ") and "not a directory" in err[0]
    assert target.read_text() == "my notes\n"


@pytest.mark.parametrize("case", ["foreign-dir", "no-parent", "unwritable-parent", "symlink"])
def test_report_refuses_other_paths_before_any_work(tmp_path, monkeypatch, capsys, case):
    _no_simulation(monkeypatch)
    target = tmp_path / "out"
    if case == "foreign-dir":
        target.mkdir()
        (target / "thesis.tex").write_text("x")
    elif case == "no-parent":
        target = tmp_path / "missing" / "out"
    elif case == "unwritable-parent":
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        (tmp_path / "ro").mkdir(mode=0o555)
        target = tmp_path / "ro" / "out"
    else:
        (tmp_path / "real").mkdir()
        target.symlink_to(tmp_path / "real")
    assert cli.main(["report", "--quick", "-o", str(target), "--json"]) == cli.EXIT_ERROR
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["type"] == "OutputPathError" and str(target) in doc["error"]["message"]
    if case == "foreign-dir":
        assert os.listdir(target) == ["thesis.tex"]


def test_emit_trace_into_an_unwritable_place_fails_before_the_replay(tmp_path, monkeypatch, capsys):
    from pcpemu.runs import replay

    monkeypatch.setattr(replay, "replay", lambda *a, **k: pytest.fail("the replay ran"))
    trace = tmp_path / "t.txt"
    trace.write_text("")
    for target in (tmp_path, tmp_path / "no" / "such.txt"):
        assert cli.main(["replay", str(trace), "--emit-trace", str(target)]) == cli.EXIT_ERROR
        assert "pcpemu replay: error: --emit-trace" in capsys.readouterr().err


@pytest.fixture
def plain_renderers(monkeypatch):
    # write_report without matplotlib's cost: what is under test is the directory.
    monkeypatch.setattr(report, "render_plots", lambda rep, d: [])
    monkeypatch.setattr(report, "render_markdown", lambda rep, plots: "md")
    monkeypatch.setattr(report, "render_html", lambda rep, plots, images: "html")


def _write(out, value):
    report.write_report(str(out), {"v": value})


def _read(out):
    return json.loads((out / "report.json").read_text())["v"]


def test_replaces_only_its_own_or_an_empty_directory(tmp_path, plain_renderers):
    out = tmp_path / "r"
    out.mkdir()
    _write(out, "1")                                        # empty: allowed
    _write(out, "2")                                        # pcpemu's own: replaced
    assert _read(out) == "2" and sorted(os.listdir(tmp_path)) == ["r"]
    (out / "report.json").unlink()
    (out / "mine").write_text("x")
    with pytest.raises(OutputPathError, match="did not write"):
        _write(out, "3")
    (tmp_path / "f").write_text("keep")
    with pytest.raises(OutputPathError, match="not a directory"):
        _write(tmp_path / "f", "4")
    assert (tmp_path / "f").read_text() == "keep" and sorted(os.listdir(out)) == ["mine", "report.html", "report.md"]


# ---- item 3: kill -9 and the umask ----

_KILLED = """
import os, shutil, signal, sys
sys.path.insert(0, {root!r})
from pcpemu.tools import report
report.render_plots = lambda rep, d: []
report.render_markdown = lambda rep, plots: "md"
def html(rep, plots, images):
    {kill_in_fill}
    return "html"
report.render_html = html
{patch}
report.write_report({out!r}, {{"v": "new"}})
"""
_SUICIDE = "os.kill(os.getpid(), signal.SIGKILL)"


def _killed_writer(tmp_path, patch="", kill_in_fill=""):
    # The writer's exit status: -9 when it reached the patched step.
    code = _KILLED.format(root=ROOT, patch=patch, kill_in_fill=kill_in_fill or "pass", out=str(tmp_path / "r"))
    return subprocess.run([sys.executable, "-c", code], timeout=120).returncode


def test_a_writer_killed_while_writing_leaves_the_old_report_and_its_temp_dir_is_cleaned(tmp_path,
                                                                                          plain_renderers):
    out = tmp_path / "r"
    _write(out, "old")
    assert _killed_writer(tmp_path, kill_in_fill=_SUICIDE) == -9
    assert _read(out) == "old"
    assert len(os.listdir(tmp_path)) == 2                  # the killed writer's temp dir
    _write(out, "next")
    assert os.listdir(tmp_path) == ["r"] and _read(out) == "next"


@pytest.mark.parametrize("step", ["os.rename", "shutil.rmtree"])
def test_a_kill_during_the_swap_leaves_a_report_at_the_path(tmp_path, plain_renderers, step):
    # Die at the first rename or rmtree once the new report is complete: the
    # path must hold the old report or the new one, never nothing.
    out = tmp_path / "r"
    _write(out, "old")
    status = _killed_writer(tmp_path, patch=f"{step} = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)")
    assert status in (0, -9)                   # one renameat2 step: there may be no os.rename to die in
    assert _read(out) in ("old", "new")
    _write(out, "next")
    assert os.listdir(tmp_path) == ["r"]


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, plain_renderers, mask):
    from pcpemu.tools.sweepreport import write_sweep_report

    old = os.umask(mask)
    try:
        _write(tmp_path / "r", "x")
        sweep = write_sweep_report(str(tmp_path / "s"), [])[0]
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "r" / "report.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(os.stat(sweep).st_mode) == 0o666 & ~mask


def test_write_report_keeps_the_interrupted_run_promise(tmp_path, monkeypatch):
    def boom(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "render_plots", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(str(tmp_path / "r"), REP)
    assert list(tmp_path.iterdir()) == []
