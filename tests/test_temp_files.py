"""Temporary files of killed writers: the next write into the folder removes them, and only them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from stylex.checkpoint import save_checkpoint
from stylex.runtime import HOST_TAG, atomic_write_bytes, remove_stale_temp_files


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_write_removes_dead_writers_temp_files_and_keeps_live_ones(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    gone = dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [folder / f".stylex.pt.{gone}.tmp", folder / f".stylex-nocst.pt.{gone}@{HOST_TAG}.tmp",
                 folder / f".report.html.{gone}@{HOST_TAG}.k9x_ab12.tmp"]
        kept = [folder / f".stylex.pt.{os.getpid()}.tmp",  # this process: a write in progress
                folder / f".stylex.pt.{sleeper.pid}@{HOST_TAG}.tmp",  # another live process
                folder / f".stylex.pt.{gone}@another-machine.tmp",  # its pid means nothing here
                folder / ".notes.tmp", folder / "config.json.tmp"]  # not a writer's temporary file
        for path in stale + kept:
            path.write_bytes(b"")
        save_checkpoint(folder / "stylex.pt", {"step": 7})
        assert torch.load(folder / "stylex.pt", weights_only=True)["step"] == 7
        assert [path for path in stale if path.exists()] == []
        assert all(path.exists() for path in kept)
        assert remove_stale_temp_files(folder) == []
    finally:
        sleeper.kill()
        sleeper.wait()


WRITER = """
import sys, time
from pathlib import Path
from stylex.runtime import temp_path_for
tmp = temp_path_for(Path(sys.argv[1]))
tmp.write_bytes(b"")  # what torch.save has written when the kill lands: often nothing
print(tmp, flush=True)
time.sleep(120)
"""


def test_no_temp_file_survives_a_kill_and_a_rerun(tmp_path):
    target = tmp_path / "stylex.pt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    left = Path(writer.stdout.readline().strip())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    assert left.exists() and left.parent == tmp_path and str(writer.pid) in left.name
    atomic_write_bytes(tmp_path / "report.html", b"<p>rerun</p>")
    save_checkpoint(target, {"step": 1})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html", "stylex.pt"]
