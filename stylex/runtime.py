"""Small runtime helpers shared by every command: device choice, code version, atomic writes, torchrun."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import socket
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import torch
import torch.distributed as dist

from stylex.errors import UserError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; an explicit CUDA device that is absent is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def process_device(name: str) -> torch.device:
    """`resolve_device`, except that each torchrun process takes the GPU of its LOCAL_RANK."""
    if "LOCAL_RANK" in os.environ and torch.cuda.is_available() and name in ("auto", "cuda"):
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return resolve_device(name)


@functools.cache
def code_version() -> str:
    """Package version plus the git commit of the checkout it runs from (with -dirty), when there is one."""
    try:
        version = metadata.version("stylex-suite")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parent.parent
    if (repo / ".git").exists():
        try:
            sha = subprocess.run(
                ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=10"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            version += f"+g{sha}"
        except (OSError, subprocess.SubprocessError):
            pass
    return version


# Temporary files are named .<target name>.<pid>@<host>[.<random>].tmp, so that a later process can tell those
# of a killed writer (kill -9 leaves them behind) from those still being written. The host is part of the name
# because on a folder shared between machines (multi-node torchrun) another machine's pids mean nothing here;
# names without a host, as older versions wrote them, are judged as this machine's.
HOST_TAG = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "localhost"
TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9_-]+)(?:\.[A-Za-z0-9_]+)?)?\.tmp$")
_SWEPT_FOLDERS: set[str] = set()


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False  # 0 and negative pids address process groups, never a writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OverflowError:
        return False
    return True


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temporary files in `folder` whose writer (pid in the name, on this host) no longer runs.

    A pid that runs again (reused) keeps its file: leaving litter is safe, deleting a live write is not.
    Returns the deleted paths; files that vanish or cannot be deleted meanwhile are left to the next sweep.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if match is None or match["host"] not in (None, HOST_TAG) or process_alive(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def temp_path_for(path: Path) -> Path:
    """The temporary file to write `path` through; the folder's stale ones go first (once per process)."""
    path = Path(path)
    folder = str(path.parent.resolve())
    if folder not in _SWEPT_FOLDERS:
        remove_stale_temp_files(path.parent)
        _SWEPT_FOLDERS.add(folder)
    return path.with_name(f".{path.name}.{os.getpid()}@{HOST_TAG}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write through a temporary file in the same folder and os.replace it, so a reader (a browser refreshing a
    report, a GIF viewer) never sees a half-written file; the temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp's random part lets threads of one process write the same target at once.
    prefix = temp_path_for(path).name.removesuffix(".tmp") + "."
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj, path: Path) -> None:
    """Write to a temporary file and rename, so a crash never leaves a half-written artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        # Python opens the file, not torch: torch reports a file it cannot open as a RuntimeError naming no path,
        # where open() raises an OSError that the command line turns into one line naming the artifact.
        try:
            handle = open(tmp, "wb")  # noqa: SIM115 - closed below, before the rename
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(path)) from None
        with handle:
            torch.save(obj, handle)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclasses.dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size)

    def average_gradients(self, *modules: torch.nn.Module) -> None:
        if self.world_size == 1:
            return
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        if grads:
            flat = torch.cat([g.flatten() for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            torch.nn.utils.vector_to_parameters(flat, grads)  # writes the averages back into the grads

    def broadcast(self, *modules: torch.nn.Module) -> None:
        if self.world_size == 1:
            return
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world_size
