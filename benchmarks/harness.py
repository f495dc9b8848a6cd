"""Shared timing harness for the benchmarks.

Rules (DESIGN.md): inputs on device first, compile time measured apart, warm-up,
``block_until_ready`` on every timed call, median of many repeats, baselines timed in
the same run and reported as ratios. Results go to ``benchmarks/results/<device>.json``
with the device, the jax version and the git SHA.
"""

import json
import pathlib
import statistics
import subprocess
import time
from typing import Any, Callable

import jax

RESULTS_DIR = pathlib.Path(__file__).parent / "results"


def time_jitted(fn: Callable, *args, repeats: int = 50, warmup: int = 3) -> dict[str, float]:
  """Times ``jax.jit(fn)(*args)``: compile seconds apart, then the median of ``repeats``.

  Args:
    fn: the function to time; it is jitted here.
    *args: its inputs, already on device.
    repeats: number of timed calls.
    warmup: untimed calls after compilation.

  Returns:
    ``{"compile_s", "median_s", "min_s", "repeats"}``.
  """
  args = jax.device_put(args)
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return {
      "compile_s": compile_s,
      "median_s": statistics.median(times),
      "min_s": min(times),
      "repeats": repeats,
  }


def environment() -> dict[str, Any]:
  """Device, backend, jax version and git SHA of this run."""
  try:
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
        cwd=pathlib.Path(__file__).parent,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    sha = "unknown"
  device = jax.devices()[0]
  return {
      "device": device.device_kind,
      "platform": device.platform,
      "num_devices": jax.device_count(),
      "jax_version": jax.__version__,
      "git_sha": sha,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


def device_slug() -> str:
  """File-name-safe name of the first device, e.g. ``nvidia_h100_80gb_hbm3`` or ``cpu``."""
  device = jax.devices()[0]
  name = device.device_kind if device.platform != "cpu" else "cpu"
  return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def save(section: str, results: dict[str, Any], outdir: pathlib.Path | None = None) -> pathlib.Path:
  """Merges ``results`` under ``section`` into ``<outdir>/<device>.json`` and returns the path."""
  outdir = pathlib.Path(outdir or RESULTS_DIR)
  outdir.mkdir(parents=True, exist_ok=True)
  path = outdir / f"{device_slug()}.json"
  data = json.loads(path.read_text()) if path.exists() else {}
  data[section] = {"environment": environment(), **results}
  path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
  return path
