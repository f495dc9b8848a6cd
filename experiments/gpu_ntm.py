r"""The NTM experiments at Graves et al.'s sizes on one GPU, in a fixed wall-clock budget.

  bash experiments/gpu_ntm.sh [--dry-run] [--resume DIR]     # the device command (issue 20)
  python -m experiments.gpu_ntm --workdir=runs/gpu_ntm --deadline=EPOCH_S [--dry_run]

Trains, one after another and each in its share of the time left (``RUNS``):
associative recall (Paper A, Fig. 11) with the regular and then the noisy annealed
controller, then copy (Graves et al., Sec. 4.1) regular and noisy annealed. Every
variant trains ``GPU["num_seeds"]`` seeds at once (the runner's ``jax.vmap``) and is
evaluated on its config's fixed set with the noise at its expectation.

No update count is fixed in advance. For each variant the step is compiled and timed
for a few seconds first (:func:`measure`), and the variant gets as many updates as
fit in its share, in two segments (:func:`train_variant`). Each segment is a
``train.train_and_evaluate`` call in ``<workdir>/<task>/<variant>`` that resumes
where the previous one stopped, so a second command too resumes every variant from
its newest checkpoint and extends it by another share. The probe's compiled programs
go to JAX's persistent compilation cache (``<workdir>/compile_cache``), from which the
segments, whose configs differ from the probe's only in ``train.num_steps``, load
them instead of compiling again; a second command that carries the cache skips
compilation too.

Sizes (``configs/common.py:graves_ntm``, unchanged), next to Graves et al.'s NTM with
an LSTM controller (PAPERS.md A.3.7; the copy task as ``configs/copy.py`` cites it):

  ==================  ==========================  ==========================================
  setting             here                        Graves et al.
  ==================  ==========================  ==========================================
  controller          LSTM, 100 units             LSTM, 100 units
  memory              128 x 20                    128 x 20
  heads               1 read, 1 write             1
  shifts per head     -1, 0, +1                   not in PAPERS.md
  optimizer           RMSProp 1e-4, mom. 0.9      RMSProp 1e-4, momentum 0.9
  gradient clipping   elementwise at 10           elementwise to (-10, 10)
  batch               32 per seed                 not in PAPERS.md
  associative recall  2..16 items of 3 x 6        2..6 items of 3 x 6 bits (Paper A: 2..16)
  copy                1..20 vectors of 8 bits     1..20 vectors of 8 bits
  parameters          62,416 recall, 63,058 copy  70,330 (associative recall)
  ==================  ==========================  ==========================================

The noisy variants anneal ``c`` on Paper A's own clock, ``30 / sqrt(floor(step /
200) + 1)`` (``noise.anneal_every`` = 200, unchanged): a run of a few thousand
updates is then exactly the first few thousand updates of Paper A's Fig. 11 (c
falls to about 7 by update 3,000 and 4.2 at 10k, where the paper's noisy NTM
already nails the task), and the clock does not depend on the measured budget,
so a resumed run is the same run continued.
"""

from concurrent import futures
import json
import math
import os
import pathlib
import subprocess
import threading
import time
from types import ModuleType
from typing import Any, NamedTuple

import jax
import ml_collections
from absl import app
from absl import flags
from absl import logging

from configs import associative_recall
from configs import copy
from experiments import checkpoints
from experiments import metrics
from experiments import train

_WORKDIR = flags.DEFINE_string("workdir", "runs/gpu_ntm", "Where every variant's run goes.")
_DEADLINE = flags.DEFINE_float(
    "deadline", None, "Unix time (s) by which every variant has finished training.")
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Tiny sizes (``TINY``), for a check of the whole command on a CPU.")


class Run(NamedTuple):
  """One variant of the command: a config, its share of the time and its tiny sizes."""

  config_module: ModuleType  # configs/<task>.py
  variant: str
  share: float  # relative share of the time left when the variant starts
  tiny: dict[str, Any]  # the task's part of the dry run's sizes


# Associative recall first (Paper A's result), regular before noisy; then copy. The
# noisy recall run gets the largest share: its step is the slowest (it draws noise)
# and Fig. 11's claim is about how soon it nails the task.
RUNS = (
    Run(associative_recall, "regular", 0.25, {"task.max_items": 3}),
    Run(associative_recall, "noisy_annealed", 0.35, {"task.max_items": 3}),
    Run(copy, "regular", 0.2, {"task.max_length": 3}),
    Run(copy, "noisy_annealed", 0.2, {"task.max_length": 3}),
)
# Overrides of every variant's config. More seeds should cost little on a GPU, where
# a step of these small matrices is expected to be bound by kernel launches, not by
# arithmetic (not measured yet: timing.jsonl will tell).
GPU = {
    "num_seeds": 8,
    "train.log_every": 50,
    "train.eval_every": 250,  # a learning curve from a few thousand updates
    "checkpoint.every": 250,  # a command killed at its deadline loses <= 250 updates
    "checkpoint.max_to_keep": 2,
}
# The dry run's sizes, on top of GPU: the same command, a minute or so per variant on
# a CPU, most of it compiling.
TINY = {
    "model.controller_size": 8,
    "model.memory_size": 8,
    "model.memory_width": 4,
    "train.batch_size": 8,
    "eval.num_examples": 16,
}
PROBE_SECONDS = 3.0  # how long the step is timed before the first budget is set
FIRST_SEGMENT = 0.4  # share of a variant's time trained at the probe's rate
TIMING_FILE = "timing.jsonl"  # one line per variant and command: budget and times


def build_config(run: Run, dry_run: bool) -> ml_collections.ConfigDict:
  """The variant's config with the ``GPU`` (and, for a dry run, ``TINY``) overrides."""
  config = run.config_module.get_config(run.variant)
  config.update_from_flattened_dict(GPU)
  if dry_run:
    config.update_from_flattened_dict({**TINY, **run.tiny})
  return config


def compile_variant(config: ml_collections.ConfigDict) -> tuple[train.Experiment, float]:
  """Compiles (or loads from the cache) ``config``'s jitted functions.

  Each function runs once, on a throwaway state, so that the training calls given
  the returned :class:`train.Experiment` only run.

  Returns:
    The experiment and the seconds its compilation took.
  """
  experiment = train.create_experiment(config)
  start = time.perf_counter()
  state = experiment.init_state(experiment.run_keys())
  jax.block_until_ready(experiment.evaluate(state, experiment.device_eval_set()))
  jax.block_until_ready(experiment.params_finite(state.params))
  jax.block_until_ready(experiment.train_step(state, experiment.device_data()))
  return experiment, time.perf_counter() - start


def compile_in_background(configs: list[ml_collections.ConfigDict]) -> list[futures.Future]:
  """Compiles ``configs`` one after another in a thread; a future of each one's
  ``(experiment, seconds)``.

  The variants train one after another; compiling the next ones meanwhile (XLA
  compiles without holding the GIL) leaves the GPU's time to training. The thread
  is a daemon, so that a compile still going at the deadline does not hold the exit
  (see the end of :func:`main`).
  """
  results = [futures.Future() for _ in configs]

  def work():
    for config, result in zip(configs, results):
      try:
        result.set_result(compile_variant(config))
      except Exception as error:  # pylint: disable=broad-except
        result.set_exception(error)  # raised in the main thread by result.result()

  threading.Thread(target=work, name="compile", daemon=True).start()
  return results


class StepTimes(NamedTuple):
  step_s: float  # one update of all the seeds, dispatched as the training loop does
  eval_s: float  # one evaluation of all the seeds on the fixed set
  params: int  # parameters of one seed


def measure(config: ml_collections.ConfigDict, experiment: train.Experiment) -> StepTimes:
  """Times ``config``'s compiled step for ``PROBE_SECONDS`` and its evaluation once.

  The probe trains a throwaway state from the initialisation; the real run starts
  from its own (or its checkpoint's) state with the same compiled programs.
  """
  state = experiment.init_state(experiment.run_keys())
  data, eval_set = experiment.device_data(), experiment.device_eval_set()
  start = time.perf_counter()
  jax.block_until_ready(experiment.evaluate(state, eval_set))
  eval_s = time.perf_counter() - start
  steps, start, elapsed = 0, time.perf_counter(), 0.0
  while elapsed < PROBE_SECONDS:
    for _ in range(10):  # dispatched back to back, as train_and_evaluate does
      state, step_metrics = experiment.train_step(state, data)
    jax.block_until_ready(step_metrics)
    steps += 10
    elapsed = time.perf_counter() - start
  params = sum(x.size for x in jax.tree.leaves(state.params)) // config.num_seeds
  return StepTimes(elapsed / steps, eval_s, params)


def latest_step(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> int:
  """The step of the newest checkpoint in ``workdir`` (0 if none): where the run resumes."""
  with checkpoints.Checkpointer(workdir / "checkpoints",
                                config.checkpoint.max_to_keep) as checkpointer:
    return max(checkpointer.all_steps(), default=0)


def train_variant(config: ml_collections.ConfigDict, compiled: futures.Future,
                  workdir: pathlib.Path, seconds: float, clock: float) -> dict[str, Any]:
  """Waits for ``config`` to compile, times its step, trains it for about ``seconds``.

  The variant trains in two segments, each a ``train_and_evaluate`` call that
  resumes where the previous one stopped: the first gets ``FIRST_SEGMENT`` of the
  time left at the probe's rate, the second the rest at the rate the first really
  had (its checkpoints, logging and set-up included). Returns the variant's record
  for ``TIMING_FILE``.
  """
  end = time.perf_counter() + seconds
  name = f"{config.name}:{config.variant}"
  run_dir = workdir / config.name / config.variant
  step = latest_step(run_dir, config)
  experiment, compile_s = compiled.result(timeout=max(end - time.perf_counter(), 0.0))
  waited_s = seconds - (end - time.perf_counter())
  times = measure(config, experiment)
  record = {"run": name, "device": jax.devices()[0].device_kind, "jax": jax.__version__,
            "start_step": step, "compile_s": compile_s, "wait_s": waited_s,
            **times._asdict(), "share_s": seconds, "segments": []}
  logging.info(
      "[t=%.0fs] %s: %d parameters per seed; compiled in %.1f s (waited %.1f s for it); "
      "%.2f ms per update of %d seeds, %.3f s per evaluation; %.0f s left of its %.0f s, "
      "from step %d.", time.time() - clock, name, times.params, compile_s, waited_s,
      1e3 * times.step_s, config.num_seeds, times.eval_s, end - time.perf_counter(),
      seconds, step)
  seconds_per_update = times.step_s + times.eval_s / config.train.eval_every
  for fraction in (FIRST_SEGMENT, 1.0):
    updates = math.floor(fraction * (end - time.perf_counter()) / seconds_per_update)
    if updates < config.train.eval_every:  # would cost more in set-up than it trains
      break
    config.train.num_steps = step + updates
    start = time.perf_counter()
    try:
      result = train.train_and_evaluate(config, run_dir, experiment=experiment)
    except train.NonFiniteLossError as error:
      logging.error("%s stopped: %s", name, error)
      record["nonfinite_step"] = error.step
      break
    seconds_per_update = (time.perf_counter() - start) / updates
    step += updates
    record["segments"].append({"updates": updates, "wall_s": time.perf_counter() - start})
    record["summary"] = summary = result["summary"]
    logging.info(
        "[t=%.0fs] %s: step %d, %.2f ms per update in this segment; %s %.3f +- %.3f over "
        "%d seeds (best %.3f, success %.0f%%).", time.time() - clock, name, step,
        1e3 * seconds_per_update, summary["metric"], summary["mean"], summary["std"],
        summary["num_runs"], summary["best"], 100 * summary["success_rate"])
  if not record["segments"]:
    logging.warning("[t=%.0fs] %s: no time left for %d updates; not trained.",
                    time.time() - clock, name, config.train.eval_every)
  record["end_step"] = step
  return record


def _git_commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"  # the device machine gets a copy of the tree without .git


def main(argv):
  del argv
  clock = time.time()
  workdir = pathlib.Path(_WORKDIR.value)
  # The probe and the segments of a variant compile the same programs (their configs
  # differ only in train.num_steps): with the persistent cache the segments load them.
  jax.config.update("jax_compilation_cache_dir", str((workdir / "compile_cache").absolute()))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  metrics.quiet_orbax_logs()
  logging.info("JAX %s, devices %s, commit %s.", jax.__version__, jax.devices(), _git_commit())
  configs = [build_config(run, _DRY_RUN.value) for run in RUNS]
  compiled = compile_in_background(configs)
  records = []
  try:
    # The first compile is nobody's share: the others overlap with training.
    compiled[0].result(timeout=max(_DEADLINE.value - time.time(), 0.0))
    for index, (run, config) in enumerate(zip(RUNS, configs)):
      left = _DEADLINE.value - time.time()
      seconds = left * run.share / sum(r.share for r in RUNS[index:])
      record = train_variant(config, compiled[index], workdir, seconds, clock)
      records.append(record)
      with (workdir / TIMING_FILE).open("a") as file:
        file.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}) + "\n")
  except futures.TimeoutError:
    logging.warning("[t=%.0fs] a variant was still compiling at the end of its share; it "
                    "and the ones after it are not trained.", time.time() - clock)
  logging.info("[t=%.0fs] done; variant, steps, ms per update (probe), final %s mean +- "
               "std, success:", time.time() - clock, configs[0].eval.metric)
  for record in records:
    summary = record.get("summary", {})
    logging.info("  %-34s %6d -> %6d  %7.2f  %s", record["run"], record["start_step"],
                 record["end_step"], 1e3 * record["step_s"],
                 f"{summary['mean']:.3f} +- {summary['std']:.3f}  "
                 f"{100 * summary['success_rate']:.0f}%" if summary else "not trained")
  if not all(result.done() for result in compiled):
    # Python's shutdown would abort the process under the compile thread.
    logging.warning("Exiting while a variant still compiles.")
    logging.flush()
    os._exit(0)


if __name__ == "__main__":
  flags.mark_flags_as_required(["deadline"])
  app.run(main)
