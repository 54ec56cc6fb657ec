"""Progress output: a live bar on a terminal, a few records per stage in a log file."""

import os
import re
import subprocess
import sys

from stylex.progress import LOG_INTERVAL_S, progress_bar


def records(text: str) -> list[str]:
    """What a log viewer shows as separate lines: tqdm redraws with a carriage return, closes with a newline."""
    return [part for part in re.split(r"[\r\n]+", text) if part.strip()]


def test_a_command_logging_to_a_file_writes_a_few_records_per_bar(tmp_path):
    # The classifier loop sets a postfix on every batch; on a terminal each would redraw the bar.
    result = subprocess.run([sys.executable, "-m", "stylex", "train-classifier", "--config", "tiny",
                             "--set", "classifier.epochs=2", "--runs-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    bars = [line for line in records(result.stderr) if "classifier epoch" in line]
    assert {line.split(":")[0] for line in bars} == {"classifier epoch 1/2", "classifier epoch 2/2"}
    assert len(bars) <= 2 * 2  # first and last state of each epoch's bar
    assert "100%" in bars[-1] and "train_acc=" in bars[-1]  # the closing record still has the figures


def test_a_terminal_keeps_the_live_bar():
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        bar = progress_bar(range(3), file=terminal)
        assert bar.mininterval < LOG_INTERVAL_S
        bar.close()
    os.close(leader)


def test_postfix_updates_wait_for_the_next_redraw_in_a_log(tmp_path):
    with open(tmp_path / "log.txt", "w") as log:
        bar = progress_bar(total=1000, file=log, desc="stage")
        for step in range(1000):
            bar.set_postfix(loss=step)
            bar.update()
        bar.close()
    shown = records((tmp_path / "log.txt").read_text())
    assert len(shown) <= 2 and shown[-1].startswith("stage: 100%") and "loss=999" in shown[-1]
