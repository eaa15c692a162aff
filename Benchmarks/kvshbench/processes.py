"""Child processes: spawning, timing (wall clock, peak RSS), stopping, and the files they leave."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import BenchError


# Child processes still alive; killed by kill_leftovers() whatever happens.
_live_children: set[subprocess.Popen] = set()


@dataclass
class ChildResult:
    """Outcome of one timed child process."""

    seconds: float
    returncode: int
    maxrss_bytes: int
    stdout: bytes = b""
    stderr: bytes = b""
    cpu_seconds: float = 0.0  # user + system time of the child


def spawn(argv: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start a child and register it so it is killed if the script aborts."""
    proc = subprocess.Popen(argv, **popen_kwargs)
    _live_children.add(proc)
    return proc


def reap(proc: subprocess.Popen, timeout: float | None = None) -> tuple[int, int, float]:
    """Wait for ``proc`` with wait4; return (returncode, ru_maxrss in bytes, user + system seconds).

    With a timeout, polls and raises BenchError when it expires (the child is
    left registered, so kill_leftovers() still ends it).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.args[0]} (pid {proc.pid}) did not exit in {timeout} s")
        time.sleep(0.005)
    proc.returncode = os.waitstatus_to_exitcode(status)
    _live_children.discard(proc)
    return proc.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def run_timed(argv: list[str], stdin_path: Path | None = None,
              capture: bool = False, stdout_path: Path | None = None) -> ChildResult:
    """Run ``argv`` to completion and measure its wall time and peak RSS.

    stdin comes from ``stdin_path`` (or /dev/null). stdout goes to
    ``stdout_path``, to a pipe when ``capture`` is set, else to /dev/null.
    stderr goes to a temporary file, so that the child is reaped with wait4
    (Popen.communicate would reap it and lose the rusage). The clock covers
    fork/exec to exit.
    """
    with open(stdin_path or os.devnull, "rb") as stdin, \
            open(stdout_path or os.devnull, "wb") as sink, \
            tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = spawn(argv, stdin=stdin, stderr=errors,
                     stdout=subprocess.PIPE if capture else sink)
        out = b""
        if capture:
            with proc.stdout:
                out = proc.stdout.read()
        returncode, maxrss, cpu = reap(proc)
        seconds = time.perf_counter() - start
        errors.seek(0)
        return ChildResult(seconds, returncode, maxrss, out, errors.read(), cpu)


def harness_peak_rss() -> int:
    """This script's own peak RSS in bytes: the lowest peak RSS a child can report.

    Children start as vfork/posix_spawn + exec of this process, and Linux
    carries the old address space's high-water mark over exec into the
    child's ru_maxrss, so no child reads lower than this.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stop_child(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` if it still runs (SIGKILL after 10 s) and forget it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _live_children.discard(proc)


def kill_leftovers() -> None:
    """Stop every child this script started that is still alive."""
    for proc in list(_live_children):
        stop_child(proc)


def command_output(argv: list[str]) -> str | None:
    """First line of a quick informational command, or None if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0] if done.returncode == 0 and lines else None


def fresh_dir(path: Path) -> Path:
    """Remove ``path`` if present and recreate it empty."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def copy_fresh(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` and flush it, so every run starts alike."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    os.sync()


def tree_size(path: Path, pattern: str = "*") -> int:
    """Total size in bytes of the regular files under ``path`` matching ``pattern``."""
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())
