"""Progress bars that suit where they are shown.

On a terminal a bar redraws in place as usual. When stderr is a file or a pipe (CI logs, `make demo > log`),
every redraw would become a record of its own (a 7-minute demo wrote 114 KB of bars), so the bar is drawn at
most every `LOG_INTERVAL_S` seconds, plus its first and last state: a few lines per stage that still say how
far a long run is and how fast it goes.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

LOG_INTERVAL_S = 60.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _LogBar(tqdm):
    """A bar whose postfix and description updates wait for the next scheduled redraw instead of forcing one."""

    def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc=None, refresh=False):
        super().set_description(desc, refresh=False)


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)`, redrawn rarely when its stream is not a terminal (a notebook's widget bar,
    which redraws in place, is left as it is)."""
    in_notebook = "notebook" in tqdm.__module__
    if not in_notebook and not _is_terminal(kwargs.get("file") or sys.stderr):
        # maxinterval too: tqdm's monitor thread would otherwise force a redraw every 10 s
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
        return _LogBar(iterable, **kwargs)
    return tqdm(iterable, **kwargs)
