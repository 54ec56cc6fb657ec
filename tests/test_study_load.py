"""The load benchmark itself (benchmarks/study_load.py) on a small level: real app, real browsers, one SQLite file.
Its figures at 10/25/50 participants are measured by running the script, not here."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("study_load", ROOT / "benchmarks" / "study_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_two_participants_finish_with_nothing_lost_or_duplicated(capsys):
    if not Path(CHROMIUM).exists():
        pytest.fail("the load benchmark needs Debian's chromium: `make test` installs it")
    (row,) = load_benchmark().main(["--participants", "2", "--gif-size", "16", "--time-limit", "240"])
    # one participant per part: 12 Part 1 items + 2 attention checks + the practice screen, and 12 Part 2 items
    assert row["finished"] == 2 and row["answers"] == 15 + 12, row
    assert row["lost"] == 0 and row["duplicated"] == 0 and not row["errors"]
    assert 0 < row["p50_s"] <= row["p95_s"]
    printed = capsys.readouterr().out
    assert "answers/s" in printed and "lost" in printed


def test_levels_are_bounded():
    with pytest.raises(SystemExit):
        load_benchmark().main(["--participants", "0"])
    with pytest.raises(SystemExit):
        load_benchmark().main(["--participants", "500"])
