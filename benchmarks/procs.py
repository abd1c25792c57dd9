"""Worker processes: start, measure peak RSS, stop, and always reap (bounded in time)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import ROOT

_STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL


@dataclass
class WorkerProcess:
    popen: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def peak_rss_mb(self) -> float | None:
        """The worker's peak resident set so far (VmHWM), in MiB; None once it has exited."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(argv: list[str], env: dict[str, str], log_dir: Path, tag: str) -> WorkerProcess:
    stderr_path = log_dir / f"{tag}.stderr"
    with open(stderr_path, "wb") as stderr:
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    return WorkerProcess(popen, stderr_path)


def stop(worker: WorkerProcess) -> float | None:
    """SIGTERM, wait, SIGKILL the group if needed; returns the peak RSS in MiB from the kernel's
    accounting of the reaped process (wait4), for when /proc was not read in time."""
    if worker.popen.returncode is not None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(worker.pid, os.WNOHANG)
        if pid:
            worker.popen.returncode = os.waitstatus_to_exitcode(status)
            _kill_group(worker.pid)  # leftovers (a fork server) go with it
            return usage.ru_maxrss / 1024
        time.sleep(0.02)
    _kill_group(worker.pid)
    _, status, usage = os.wait4(worker.pid, 0)
    worker.popen.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def workers(
    argv: list[str], env: dict[str, str], log_dir: Path, tag: str, count: int = 1
) -> Iterator[list[WorkerProcess]]:
    started = [start(argv, env, log_dir, f"{tag}-{i}") for i in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            stop(worker)
