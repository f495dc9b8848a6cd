"""Shared timing harness for the benchmarks.

Rules (DESIGN.md): inputs on device first, compile time measured apart, warm-up,
``block_until_ready`` on every timed call, median of many repeats, baselines timed in
the same run and reported as ratios. Results go to ``benchmarks/results/<device>.json``
with the device, the jax version and the git SHA.
Every speed target was set on an H100; :func:`target` judges a figure against it on an
H100 or an H200 and only prints it elsewhere.

:func:`time_jitted` times one function. :func:`compare` times several functions on the
same inputs *interleaved*, one call of each per round, so that a machine whose load
changes during the run (a shared CPU, a GPU changing clocks) slows all of them alike;
its ratios are medians over rounds of per-round time ratios against a baseline.
"""

import json
import os
import pathlib
import re
import statistics
import subprocess
import time
from typing import Any, Callable

import jax

RESULTS_DIR = pathlib.Path(__file__).parent / "results"
# Devices whose runs are judged against the targets (all set on an H100): an H200 has the
# H100's arithmetic rates and about 1.4x its memory bandwidth (see bandwidth_note).
TARGET_DEVICES = ("H100", "H200")


def compile_timed(fn: Callable, *args) -> tuple[jax.stages.Compiled, float]:
  """``jax.jit(fn)`` lowered and compiled for ``args``, and the seconds that took."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def _timed_call(compiled: Callable, args: tuple) -> float:
  start = time.perf_counter()
  jax.block_until_ready(compiled(*args))
  return time.perf_counter() - start


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
  compiled, compile_s = compile_timed(fn, *args)
  for _ in range(warmup):
    jax.block_until_ready(compiled(*args))
  times = [_timed_call(compiled, args) for _ in range(repeats)]
  return {
      "compile_s": compile_s,
      "median_s": statistics.median(times),
      "min_s": min(times),
      "repeats": repeats,
  }


def compare(
    fns: dict[str, Callable],
    *args,
    baseline: str,
    repeats: int = 50,
    warmup: int = 3,
    compile_s: dict[str, float] | None = None,
) -> dict[str, dict[str, float]]:
  """Times every function of ``fns`` on the same ``args``, interleaved round by round.

  Each function is jitted and compiled first (compile time recorded apart) and
  called ``warmup`` times; then each of ``repeats`` rounds calls every function
  once, in an order rotated every round, with ``block_until_ready``.

  Args:
    fns: name -> function of ``*args``, or an already compiled
      ``jax.stages.Compiled`` for them (compiled under a patch, say, or also used
      elsewhere).
    *args: the inputs, moved to the default device here before any timing.
    baseline: the name in ``fns`` that ratios are taken against.
    repeats: number of rounds.
    warmup: untimed calls of each function after compilation.
    compile_s: name -> the seconds the caller took to compile that entry of ``fns``
      (e.g. with :func:`compile_timed`); 0.0 for a compiled entry not named here.

  Returns:
    name -> ``{"compile_s", "median_s", "min_s", "repeats", "ratio"}`` where
    ``ratio`` is the median over rounds of ``baseline time / this time`` (so a
    throughput ratio: 1.0 is as fast as the baseline, 0.5 is half as fast).
  """
  if baseline not in fns:
    raise ValueError(f"baseline={baseline!r} is not one of {sorted(fns)}.")
  args = jax.device_put(args)
  names = list(fns)
  compiled, compile_s = {}, dict(compile_s or {})
  for name in names:
    if isinstance(fns[name], jax.stages.Compiled):
      compiled[name] = fns[name]
      compile_s.setdefault(name, 0.0)
    else:
      compiled[name], compile_s[name] = compile_timed(fns[name], *args)
    for _ in range(warmup):
      jax.block_until_ready(compiled[name](*args))
  times = {name: [] for name in names}
  for round_index in range(repeats):
    shift = round_index % len(names)
    for name in names[shift:] + names[:shift]:
      times[name].append(_timed_call(compiled[name], args))
  results = {}
  for name in names:
    ratios = [b / t for b, t in zip(times[baseline], times[name])]
    results[name] = {
        "compile_s": compile_s[name],
        "median_s": statistics.median(times[name]),
        "min_s": min(times[name]),
        "repeats": repeats,
        "ratio": statistics.median(ratios),
    }
  return results


def environment() -> dict[str, Any]:
  """Device, backend, jax version and git SHA of this run.

  The SHA is ``git rev-parse HEAD``'s; where the tree was copied without its ``.git``
  (a lent GPU machine), the ``BENCH_GIT_SHA`` environment variable's, else ``"unknown"``.
  """
  try:
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
        cwd=pathlib.Path(__file__).parent,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    sha = os.environ.get("BENCH_GIT_SHA", "unknown")
  device = jax.devices()[0]
  return {
      "device": device.device_kind,
      "platform": device.platform,
      "num_devices": jax.device_count(),
      "jax_version": jax.__version__,
      "git_sha": sha,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


def provenance(env: dict[str, Any]) -> str:
  """The first words of a generated table: device, jax version, git SHA and time."""
  return (f"Device `{env['device']}` ({env['platform']}), jax {env['jax_version']}, git "
          f"`{env['git_sha'][:10]}`, {env['time']}")


def judges_targets(env: dict[str, Any]) -> bool:
  """Whether a run on ``env``'s device is judged against the targets: an H100 or an H200."""
  return any(name in env["device"] for name in TARGET_DEVICES)


def target(bound: str, met: bool, env: dict[str, Any]) -> str:
  """``H100 target <= 1.0``, followed by ``, met`` or ``, missed`` where :func:`judges_targets`."""
  verdict = (", met" if met else ", missed") if judges_targets(env) else ""
  return f"H100 target {bound}{verdict}"


def bandwidth_note(env: dict[str, Any]) -> str:
  """A note for the elementwise (memory-bound) benchmarks' tables on an H200, else ``""``.

  Their baselines (``jax.nn.hard_tanh``, a read-modify-write) only move bytes; the
  noisy versions also do the generator's arithmetic. An H200 has about 1.4x an H100's
  memory bandwidth at the same arithmetic rates, so a ratio target set on an H100 is
  harder to meet on it.
  """
  if "H200" not in env["device"]:
    return ""
  return ("H200: about 1.4x the memory bandwidth of the H100 the targets were set on, at "
          "the same arithmetic rates; the memory-bound baselines run faster here and the "
          "noisy versions need not, so these ratio targets are harder to meet than on an H100.")


def torch_device(torch) -> str | None:
  """The torch device on the same kind of hardware as JAX's, or None if torch has none.

  A torch row measured on another kind of device than the JAX rows (e.g. CPU-only
  torch on a GPU machine) would make a meaningless ratio, so it is skipped.
  """
  platform = jax.devices()[0].platform
  if platform == "gpu":
    return "cuda" if torch.cuda.is_available() else None
  return "cpu" if platform == "cpu" else None


def device_slug(env: dict[str, Any] | None = None) -> str:
  """File-name-safe name of a device, e.g. ``nvidia_h100_80gb_hbm3`` or ``cpu``.

  Args:
    env: an :func:`environment` (from a results file, say); default: this process's
      first device.
  """
  if env is None:
    device = jax.devices()[0]
    platform, kind = device.platform, device.device_kind
  else:
    platform, kind = env["platform"], env["device"]
  name = kind if platform != "cpu" else "cpu"
  return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def save(section: str, results: dict[str, Any], outdir: pathlib.Path | None = None, *,
         env: dict[str, Any] | None = None) -> pathlib.Path:
  """Merges ``results`` under ``section`` into ``<outdir>/<device>.json`` and returns the path.

  ``env`` (default this run's :func:`environment`) is stored with them and names the device.
  """
  env = environment() if env is None else env
  outdir = pathlib.Path(outdir or RESULTS_DIR)
  outdir.mkdir(parents=True, exist_ok=True)
  path = outdir / f"{device_slug(env)}.json"
  data = json.loads(path.read_text()) if path.exists() else {}
  data[section] = {"environment": env, **results}
  path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
  return path


def publish(benchmark: str, section: str, heading: str, results: dict[str, Any],
            table: Callable[[dict[str, Any]], str], outdir: pathlib.Path | None = None, *,
            markdown: bool = True) -> pathlib.Path:
  """:func:`save` of ``results`` and, for a run into ``benchmarks/results``, its table.

  One :func:`environment` serves both, so the JSON and the table name the same run. A
  run into another folder (``outdir``) is a scratch run: its tables are not written.

  Args:
    benchmark: the module's name, e.g. ``"bench_ntm"`` (its block in the tables file).
    section: the results file's section.
    heading: the tables file's section heading.
    results: the figures; ``results["environment"]`` is set where the table is written.
    table: ``results -> markdown``, the module's ``table``.
    outdir: the results folder (default ``benchmarks/results``).
    markdown: False skips the table.

  Returns:
    The path of the results file.
  """
  env = environment()
  path = save(section, results, outdir, env=env)
  if markdown and outdir is None:
    results["environment"] = env
    update_markdown(benchmark, heading, table(results), env=env)
  return path


def tables_path(env: dict[str, Any] | None = None) -> pathlib.Path:
  """``benchmarks/results/<device>.md``: the generated tables of ``env``'s (or this) device.

  BENCHMARKS.md is written by hand and links to these files; no script edits it.
  """
  return RESULTS_DIR / f"{device_slug(env)}.md"


def update_markdown(benchmark: str, heading: str, table: str,
                    path: pathlib.Path | None = None, *,
                    env: dict[str, Any] | None = None) -> None:
  """Replaces the block of ``benchmark`` inside the ``heading`` section of the tables file.

  The file is :func:`tables_path` of ``env`` (default this process's device) unless
  ``path`` is given. The block sits between ``<!-- <benchmark>:<device>:begin/end -->``
  markers; a missing section is appended.
  """
  path = tables_path(env) if path is None else path
  slug = device_slug(env)
  begin, end = f"<!-- {benchmark}:{slug}:begin -->", f"<!-- {benchmark}:{slug}:end -->"
  block = f"{begin}\n{table}\n{end}"
  text = path.read_text() if path.exists() else (
      f"# Benchmark tables: {slug}\n\nGenerated by the scripts in benchmarks/ (see BENCHMARKS.md "
      "for the workloads and what the numbers mean); do not edit by hand.\n")
  if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
  else:
    if heading not in text:
      text = text.rstrip("\n") + f"\n\n{heading}\n"
    start = text.index(heading) + len(heading)
    following = re.search(r"^## ", text[start:], flags=re.MULTILINE)
    stop = start + following.start() if following else len(text)
    section = text[start:stop].rstrip("\n")
    text = text[:start] + f"{section}\n\n{block}\n" + ("\n" + text[stop:] if following else "")
  path.write_text(text)
