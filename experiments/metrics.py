"""Metric output of a run: a JSONL file, optional TensorBoard events, and a progress line.

``metrics.jsonl`` holds one JSON object per line, ``{"step": s, "split": "train" |
"eval" | "nonfinite", "<metric>": [one value per run], ...}``; experiments/report.py
reads it. TensorBoard event files (mean and standard deviation over the runs) are
written with tensorboardX when it is installed, without TensorFlow; the writer has
clu's method names, so a clu writer can take TensorBoard's place.
"""

import json
import logging as pylogging
import math
import os
import pathlib
import sys
import time
from typing import Any, Mapping, Sequence, TextIO

import numpy as np
from absl import logging
from flax import traverse_util

METRICS_FILE = "metrics.jsonl"
FINAL_METRICS_FILE = "final_metrics.json"
CONFIG_FILE = "config.json"  # the run's config, as MetricWriter.write_hparams wrote it
RESUME_HISTORY_FILE = "resume_history.jsonl"  # the fields a resumed run changed


def _jsonable(value: Any) -> Any:
  value = np.asarray(value)
  if value.ndim == 0:
    number = value.item()
    return number if not isinstance(number, float) or math.isfinite(number) else str(number)
  return [_jsonable(v) for v in value]


def read_jsonl(path: pathlib.Path) -> tuple[list[dict[str, Any]], str | None]:
  """The records of the JSONL file ``path``, and its last line if a kill or a full disk
  tore it (None otherwise).

  Only the last line may be torn (appends are line by line); an unparseable line
  before it means something else damaged the file, and raises.
  """
  lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1)
           if line.strip()]
  records = []
  for index, (number, line) in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as error:
      if index == len(lines) - 1:
        logging.warning("%s: line %d is torn (%s), probably by a kill or a full disk while "
                        "it was written; it is set aside.", path, number, error.msg)
        return records, line
      raise ValueError(
          f"{path}: line {number} is not JSON ({error.msg}), and it is not the last line, "
          "so the file was damaged after it was written. Fix: repair or delete that line "
          "(or restore the file from a copy), then run again."
      ) from None
  return records, None


def read_metrics(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
  """The records of ``workdir/metrics.jsonl`` (empty if there is none).

  A torn last line is skipped with a warning that names the file and the line.
  """
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return read_jsonl(path)[0]


def write_atomically(path: pathlib.Path, text: str) -> None:
  """Replaces ``path`` by ``text`` through a temporary file and a rename: a kill at any
  moment leaves either the old file or the new one."""
  temporary = path.with_name(path.name + ".tmp")
  with temporary.open("w") as file:
    file.write(text)
    file.flush()
    os.fsync(file.fileno())
  os.replace(temporary, path)


class MetricWriter:
  """The run's metric writer, with the method names of clu's ``metric_writers``.

  ``write_scalars`` appends to ``metrics.jsonl`` one record per split, with one value
  per run; ``write_hparams`` writes ``config.json``. Every writer in
  ``scalar_writers`` (anything with clu's ``write_scalars``, ``write_hparams``,
  ``flush`` and ``close``, e.g. a ``clu.metric_writers`` writer) gets each metric's
  mean over the runs, and its standard deviation as ``<name>_std``; by default that is
  a TensorBoard writer (tensorboardX, when installed; no TensorFlow).

  A resumed run first drops the records past its restored step, so the file ends
  up as if the run had never been interrupted. That rewrite goes through a temporary
  file and an atomic rename; a torn last line (a kill or a full disk mid-write) is
  moved to ``metrics.jsonl.torn`` with a warning.

  Args:
    workdir: the run's directory.
    resume_step: the step the run starts from; later records are dropped (all of
      them if 0).
    scalar_writers: writers of the mean and spread over the runs; None: TensorBoard
      event files in ``<workdir>/tensorboard`` if tensorboardX is installed.
    enabled: False makes every method a no-op (the non-chief hosts of a multi-host run).
  """

  def __init__(self, workdir: str | pathlib.Path, *, resume_step: int = 0,
               scalar_writers: Sequence[Any] | None = None, enabled: bool = True):
    self._enabled = enabled
    self._file = None
    self._writers = []
    if not enabled:
      return
    self._workdir = pathlib.Path(workdir)
    self._path = self._workdir / METRICS_FILE
    self._path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh start (resume_step 0) keeps nothing: its step-0 evaluation is redone.
    records, torn = read_jsonl(self._path) if self._path.exists() else ([], None)
    if torn is not None:  # kept beside the file, not lost
      with self._path.with_name(self._path.name + ".torn").open("a") as file:
        file.write(torn + "\n")
    kept = [r for r in records if r["step"] <= resume_step] if resume_step else []
    write_atomically(self._path, "".join(json.dumps(r) + "\n" for r in kept))
    self._file = self._path.open("a")
    if scalar_writers is None:
      scalar_writers = _tensorboard(self._workdir / "tensorboard", resume_step)
    self._writers = list(scalar_writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Writes ``{"<split>/<metric>": value}``; a value is a scalar or one value per run.

    Each split becomes one ``metrics.jsonl`` record, ``{"step", "split", <metric>: ...}``.
    """
    if not self._enabled:
      return
    records: dict[str, dict[str, Any]] = {}
    for key, value in scalars.items():
      split, name = key.split("/", 1)
      records.setdefault(split, {"step": int(step), "split": split})[name] = _jsonable(value)
    for record in records.values():
      self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    summary = {}
    for key, value in scalars.items():
      value = np.asarray(value, np.float64)
      summary[key] = float(value.mean())
      if value.size > 1:
        summary[f"{key}_std"] = float(value.std())
    for writer in self._writers:
      writer.write_scalars(int(step), summary)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """Writes the run's config (a nested dict) to ``config.json``, atomically."""
    if not self._enabled:
      return
    write_atomically(self._workdir / CONFIG_FILE,
                     json.dumps(hparams, indent=2, sort_keys=True) + "\n")
    flat = traverse_util.flatten_dict(dict(hparams), sep=".")
    for writer in self._writers:
      writer.write_hparams(flat)

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()
    for writer in self._writers:
      writer.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    for writer in self._writers:
      writer.close()
    self._writers = []


class _TensorBoardWriter:
  """clu's writer methods over tensorboardX's ``SummaryWriter``."""

  def __init__(self, summary_writer):
    self._writer = summary_writer

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for name, value in scalars.items():
      self._writer.add_scalar(name, value, step)

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._writer.add_text("hparams", json.dumps(hparams, indent=1, sort_keys=True, default=str))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def _tensorboard(directory: pathlib.Path, resume_step: int) -> list[_TensorBoardWriter]:
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.info("tensorboardX is not installed: no TensorBoard event files.")
    return []
  return [_TensorBoardWriter(tensorboardX.SummaryWriter(
      str(directory), purge_step=resume_step + 1 if resume_step else None))]


def _quiet_orbax(record: pylogging.LogRecord) -> bool:
  """Drops Orbax's INFO records and the tracebacks of its errors (the message stays)."""
  if "orbax" not in record.pathname:
    return True
  if record.levelno >= pylogging.ERROR and logging.get_verbosity() < 1:
    # A failed save (a full disk) logs the traceback of every writer thread; the
    # runner ends with one line that names the problem, and --verbosity=1 keeps them.
    record.exc_info = record.exc_text = None
  return record.levelno >= pylogging.WARNING


def quiet_orbax_logs() -> None:
  """Keeps Orbax's per-save INFO chatter, and its threads' tracebacks unless
  ``--verbosity`` >= 1, out of a program's log; its warnings and errors stay."""
  absl_logger = logging.get_absl_logger()
  if _quiet_orbax not in absl_logger.filters:
    absl_logger.addFilter(_quiet_orbax)


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  minutes, secs = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
  """A progress bar with steps/s and ETA on a terminal; plain log lines otherwise."""

  def __init__(self, total_steps: int, start_step: int, *, label: str = "",
               stream: TextIO | None = None):
    self._total, self._start = total_steps, start_step
    self._label = label
    self._stream = sys.stderr if stream is None else stream
    self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
    self._t0 = time.perf_counter()

  def update(self, step: int, summary: str = "") -> None:
    """Reports that ``step`` steps are done; ``summary`` is a short metric string."""
    elapsed = time.perf_counter() - self._t0
    done = step - self._start
    rate = done / elapsed if elapsed > 0 and done > 0 else float("nan")
    eta = (self._total - step) / rate if rate > 0 else float("nan")
    head = f"{self._label} " if self._label else ""
    text = (f"{head}step {step}/{self._total} ({rate:.1f} steps/s, ETA {_duration(eta)})"
            f"{' ' + summary if summary else ''}")
    if self._tty:
      width = 24
      filled = int(width * step / max(self._total, 1))
      self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K")
      self._stream.flush()
    else:
      logging.info("%s", text)

  def close(self) -> None:
    if self._tty:
      self._stream.write("\n")
      self._stream.flush()
