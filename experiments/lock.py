"""One run per workdir: a lock file with its holder's process id, host and a heartbeat.

Process 0 of a run holds ``<workdir>/lock`` while it trains; a second run on the same
workdir refuses, naming the holder. A lock is stale, and taken over with a warning,
when its heartbeat is older than ``stale_s`` or when its holder is a process of this
host that no longer exists (a run killed with ``kill -9`` leaves its lock behind).
"""

import json
import os
import pathlib
import socket
import threading
import time
from typing import Any

from absl import logging

LOCK_FILE = "lock"


class WorkdirLockedError(RuntimeError):
  """Another live run holds the workdir's lock."""


def _holder_alive(holder: dict[str, Any]) -> bool:
  """False only when the holder is known dead: a process of this host that is gone."""
  if holder.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(holder["pid"]), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, KeyError, ValueError, TypeError):
    return True
  return True


class WorkdirLock:
  """Context manager holding ``<workdir>/lock`` (a no-op where ``enabled`` is False).

  Args:
    workdir: the run's directory.
    enabled: False on the processes other than 0 of a multi-host run.
    heartbeat_s: how often the holder rewrites its heartbeat.
    stale_s: a heartbeat older than this marks a lock as abandoned.
  """

  def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True,
               heartbeat_s: float = 10.0, stale_s: float = 120.0):
    self._path = pathlib.Path(workdir) / LOCK_FILE
    self._enabled = enabled
    self._heartbeat_s, self._stale_s = heartbeat_s, stale_s
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def _payload(self) -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "heartbeat": time.time()})

  def _write(self) -> None:
    temporary = self._path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
    temporary.write_text(self._payload())
    os.replace(temporary, self._path)

  def _take(self) -> None:
    try:
      fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      pass
    else:
      with os.fdopen(fd, "w") as file:
        file.write(self._payload())
      return
    try:
      holder = json.loads(self._path.read_text())
      age = time.time() - float(holder["heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):
      holder, age = {}, float("inf")  # unreadable: torn by a kill mid-write
    if age < self._stale_s and _holder_alive(holder):
      raise WorkdirLockedError(
          f"{self._path.parent} is in use by process {holder.get('pid')} on host "
          f"{holder.get('host')} (heartbeat {age:.0f} s ago). Fix: wait for that run to end, "
          "or use another --workdir; if that process is gone, delete "
          f"{self._path}.")
    logging.warning("Taking over the stale lock %s of process %s on host %s (heartbeat %s s "
                    "ago).", self._path, holder.get("pid"), holder.get("host"),
                    "?" if age == float("inf") else f"{age:.0f}")
    self._write()

  def _beat(self) -> None:
    while not self._stop.wait(self._heartbeat_s):
      self._write()

  def __enter__(self) -> "WorkdirLock":
    if self._enabled:
      self._path.parent.mkdir(parents=True, exist_ok=True)
      self._take()
      self._thread = threading.Thread(target=self._beat, name="workdir-lock", daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc_info) -> None:
    if self._thread is not None:
      self._stop.set()
      self._thread.join()
      self._path.unlink(missing_ok=True)
