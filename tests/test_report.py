import json

import pytest

from pcpemu import cli
from pcpemu.report import COUNTERS, build_report


def test_report_files_agree_with_the_library(tmp_path):
    assert cli.main(["report", "-o", str(tmp_path), "--memory", "256M", "--cma", "64M", "--cpus", "2",
                     "--ops", "3000", "--seed", "4"]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    again = build_report("256M", "64M", 2, 4, 3000)
    assert rep["policies"]["single"]["counters"] == again["policies"]["single"]["counters"]
    md = (tmp_path / "report.md").read_text()
    for name, r in rep["policies"].items():
        row = f"| {name} | " + " | ".join(str(r["counters"][k]) for k in COUNTERS)
        assert row in md
    assert not list(tmp_path.glob(".report*"))      # no half-written files left


def test_bad_options_fail_before_any_work(tmp_path):
    out = tmp_path / "r"
    assert cli.main(["report", "-o", str(out), "--memory", "1X"]) == cli.EXIT_ERROR
    assert not out.exists()
    with pytest.raises(SystemExit):
        cli.main(["report", "--policies", "triple"])
