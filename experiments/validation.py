"""Config validation, run before anything is built or compiled.

The config files return locked ConfigDicts (``configs.common.locked``), so
ml_collections itself refuses an unknown (e.g. misspelt) field, with a "Did you mean",
and a value of another type when it is assigned, in Python and from the command line.
This module checks what a ConfigDict cannot: the allowed values of the fields that
have a constraint (``CONSTRAINTS``, by path), finite floats, a None only in the
placeholders of ``configs.common.base_config``, the fields each task's and model's
builder reads, and the rules between fields. A config that fails gets one :class:`ConfigError`
listing every problem and how to fix it.

A config that is not locked, or has a section replaced by an unlocked ConfigDict, is
refused rather than locked here: a misspelt field it already holds could no longer be
told from a real one.
"""

import math
from typing import Any, Callable

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

import noisy_jax.schedules
from configs import common
from noisy_jax import activations

TASKS = ("unique_integers", "associative_recall", "copy", "repeat_copy", "digits")
MODELS = ("lstm_mlp", "lstm", "mlp", "ntm")
NOISE_MODES = ("none", *activations.MODES)
OPTIMIZERS = ("sgd", "adam", "rmsprop")
# Models that may serve each task.
TASK_MODELS = {
    "unique_integers": ("lstm_mlp",),
    "associative_recall": ("ntm", "lstm"),
    "copy": ("ntm", "lstm"),
    "repeat_copy": ("ntm", "lstm"),
    "digits": ("mlp",),
}
# Metrics each task's evaluation reports (the headline eval.metric must be one).
TASK_METRICS = {
    "unique_integers": ("loss", "error_pct", "accuracy_pct"),
    "digits": ("loss", "error_pct", "accuracy_pct"),
    "associative_recall": ("loss", "error_pct", "bit_errors"),
    "copy": ("loss", "error_pct", "bit_errors"),
    "repeat_copy": ("loss", "error_pct", "bit_errors"),
}
# Metrics where larger is better; the others are minimised.
HIGHER_IS_BETTER = ("accuracy_pct",)


def meets_threshold(metric: str, values, threshold: float) -> np.ndarray:
  """Where ``values`` of ``metric`` reach ``threshold`` (>= for HIGHER_IS_BETTER, else <=)."""
  values = np.asarray(values, np.float64)
  return values >= threshold if metric in HIGHER_IS_BETTER else values <= threshold

# The task and model fields each builder reads (train.make_task, models.build_model):
# a locked section cannot grow them, so a section renamed to another task or model
# (``config.model.name = "mlp"`` on an LSTM config) lacks them.
TASK_FIELDS = {
    "unique_integers": ("length", "num_values", "curriculum_start", "curriculum_steps"),
    "associative_recall": ("min_items", "max_items", "item_len", "bits"),
    "copy": ("min_length", "max_length", "bits"),
    "repeat_copy": ("min_length", "max_length", "min_repeats", "max_repeats", "bits"),
    "digits": ("data_dir",),
}
MODEL_FIELDS = {
    "lstm_mlp": ("hidden_size", "mlp_size", "input_encoding", "embed_size", "forget_bias",
                 "unroll"),
    "lstm": ("hidden_size", "unroll"),
    "mlp": ("num_layers", "width", "init", "init_std"),
    "ntm": ("controller", "controller_size", "memory_size", "memory_width", "num_read_heads",
            "num_write_heads", "shift_range", "unroll"),
}


class ConfigError(ValueError):
  """A config that cannot run; the message lists every problem found."""


Check = Callable[[Any], "str | None"]  # a complaint about a value, or None


def _number(low, high=None, *, above=False) -> Check:
  """A number >= ``low`` (> with ``above``; < ``high`` if given), an int if ``low`` is one."""
  kind, types = ("an int", (int,)) if isinstance(low, int) else ("a number", (int, float))
  bounds = f"{'>' if above else '>='} {low}" + (f" and < {high}" if high is not None else "")

  def check(value):
    if (isinstance(value, bool) or not isinstance(value, types) or value < low
        or above and value == low or high is not None and value >= high):
      return f"must be {kind} {bounds}"
    return None
  return check


def _choice(*options) -> Check:
  return lambda value: (None if value in options else
                        f"must be one of {', '.join(map(repr, options))}")


# The value constraints, by path; a field without one takes any value of its type.
# A path a config does not have (another task's or model's field) is skipped.
CONSTRAINTS: dict[str, Check] = {
    "seed": _number(0), "num_seeds": _number(1), "num_devices": _number(0),
    "noise.mode": _choice(*NOISE_MODES),
    "noise.nanil_scale": _choice(*activations.NANIL_SCALES),
    "noise.c": _number(0.0), "noise.c0": _number(0.0), "noise.c_final": _number(0.0),
    "noise.anneal_every": _number(1),
    "optimizer.name": _choice(*OPTIMIZERS),
    "optimizer.learning_rate": _number(0.0, above=True),
    "optimizer.momentum": _number(0.0, 1.0),
    "optimizer.clip_norm": _number(0.0), "optimizer.clip_value": _number(0.0),
    "optimizer.gradient_noise_eta": _number(0.0),
    "optimizer.gradient_noise_gamma": _number(0.0),
    "train.num_steps": _number(1), "train.batch_size": _number(1),
    "train.log_every": _number(1), "train.eval_every": _number(1),
    "train.on_nonfinite": _choice("stop", "freeze"),
    "eval.num_examples": _number(0), "eval.seed": _number(0),
    "checkpoint.every": _number(1), "checkpoint.max_to_keep": _number(1),
    "task.length": _number(1), "task.num_values": _number(2),
    "task.curriculum_start": _number(0), "task.curriculum_steps": _number(1),
    "task.min_items": _number(2), "task.max_items": _number(2), "task.item_len": _number(1),
    "task.min_length": _number(1), "task.max_length": _number(1),
    "task.min_repeats": _number(1), "task.max_repeats": _number(1), "task.bits": _number(1),
    "model.hidden_size": _number(1), "model.mlp_size": _number(1),
    "model.input_encoding": _choice("one_hot", "embedding"), "model.embed_size": _number(1),
    "model.unroll": _number(1),
    "model.num_layers": _number(0), "model.width": _number(1),
    "model.init": _choice("simple", "zero", "good"),
    "model.init_std": _number(0.0, above=True),
    "model.controller": _choice("lstm", "feedforward"),
    "model.controller_size": _number(1), "model.memory_size": _number(1),
    "model.memory_width": _number(1), "model.num_read_heads": _number(1),
    "model.num_write_heads": _number(1), "model.shift_range": _number(0),
}


def _check_fields(section: ml_collections.ConfigDict, prefix: str, problems: list[str],
                  optional: set[str], reported: bool = False) -> None:
  """Appends the problems of every field below ``section`` that no other field affects.

  ``optional``: the paths that may be None; ``reported``: an unlocked section above
  this one was reported already.
  """
  if not section.is_locked and not reported:
    where = f"Section {prefix.rstrip('.')}" if prefix else "The config"
    problems.append(
        f"{where} is not locked, so a misspelt or mistyped field in it would pass unnoticed. "
        "Fix: end get_config with `return common.locked(config)`, or call .lock() on it.")
  for name, value in section.items():
    path = prefix + name
    if isinstance(value, ml_collections.ConfigDict):
      _check_fields(value, f"{path}.", problems, optional, reported or not section.is_locked)
    elif value is None:
      if path not in optional:
        problems.append(f"{path} must be set, got None.")
    elif isinstance(value, float) and not math.isfinite(value):
      problems.append(f"{path} must be finite, got {value!r}.")
    elif path in CONSTRAINTS and (complaint := CONSTRAINTS[path](value)):
      problems.append(f"{path} {complaint}, got {value!r}.")


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return traverse_util.flatten_dict(config.to_dict(), sep=".")


def _check_range(problems, section, where, low, high):
  if section[low] > section[high]:
    problems.append(
        f"{where}.{low}={section[low]} is larger than {where}.{high}={section[high]}.")


def validate(config: ml_collections.ConfigDict, num_available_devices: int) -> None:
  """Raises :class:`ConfigError` listing every problem of ``config``; returns None if none.

  Args:
    config: an experiment config (configs/<name>.py), locked.
    num_available_devices: devices the run may use (``jax.device_count()``).
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"The config is a {type(config).__name__}, not an ml_collections "
                      "ConfigDict. Fix: pass what a configs/<name>.py get_config returns.")
  # The shared fields, and which of them may be None: the placeholders (a copy by
  # copy_and_resolve_references turns a placeholder into a plain None, so a
  # config's own field types cannot tell).
  shared = _flat(common.base_config("", ""))
  problems: list[str] = []
  _check_fields(config, "", problems, {path for path, value in shared.items() if value is None})
  present = _flat(config)
  missing = sorted(shared.keys() - present.keys())
  if missing:
    problems.append(f"Missing fields {', '.join(missing)}. Fix: build the config on "
                    "configs.common.base_config, which declares them.")

  task_name = config.task.get("name") if "task" in config else None
  model_name = config.model.get("name") if "model" in config else None
  for section, name, names, builders in (("task", task_name, TASKS, TASK_FIELDS),
                                         ("model", model_name, MODELS, MODEL_FIELDS)):
    if name not in names:
      problems.append(
          f"{section}.name must be one of {', '.join(map(repr, names))}, got {name!r}.")
      continue
    lacks = [f"{section}.{field}" for field in builders[name]
             if f"{section}.{field}" not in present]
    if lacks:
      problems.append(
          f"{section}.name={name!r} needs {', '.join(lacks)}, which the {section} section "
          f"lacks (it was written for another {section}, and a locked section cannot grow "
          f"fields). Fix: start from a config file of that {section}, or assign "
          f"config.{section} a whole ConfigDict for it.")
  if problems:  # the cross-field checks below assume well-typed fields
    raise ConfigError(_message(config, problems))

  if model_name not in TASK_MODELS[task_name]:
    problems.append(
        f"model.name={model_name!r} cannot serve task.name={task_name!r}; use one of "
        f"{', '.join(map(repr, TASK_MODELS[task_name]))}.")
  if config.eval.metric not in TASK_METRICS[task_name]:
    problems.append(
        f"eval.metric={config.eval.metric!r} is not reported by task {task_name!r}; use one "
        f"of {', '.join(map(repr, TASK_METRICS[task_name]))}.")
  task = config.task
  if task_name == "unique_integers" and task.curriculum_start > task.length:
    problems.append(
        f"task.curriculum_start={task.curriculum_start} is longer than "
        f"task.length={task.length}.")
  if task_name == "associative_recall":
    _check_range(problems, task, "task", "min_items", "max_items")
  if task_name in ("copy", "repeat_copy"):
    _check_range(problems, task, "task", "min_length", "max_length")
  if task_name == "repeat_copy":
    _check_range(problems, task, "task", "min_repeats", "max_repeats")

  if config.eval.num_examples == 0 and task_name != "digits":
    problems.append(
        "eval.num_examples=0 (the whole test split) only applies to task 'digits'; give "
        "the size of the fixed evaluation set.")
  noise = config.noise
  if noise.mode != "none" and model_name == "mlp":
    problems.append(
        f"noise.mode={noise.mode!r} needs a model with saturating units (lstm_mlp, lstm, "
        "ntm); the mlp has ReLUs. Paper B's noise is optimizer.gradient_noise_eta.")
  for name in ("c", "alpha"):
    if noise.mode == "none" and noise[name] is not None:
      problems.append(f"noise.{name}={noise[name]} with noise.mode='none' has no effect; set "
                      "noise.mode or leave it None.")
  if noise.anneal and noise.mode == "none":
    problems.append("noise.anneal=True with noise.mode='none' anneals nothing; set noise.mode.")
  if noise.anneal and noise.c_final > noise.c0:
    problems.append(f"noise.c_final={noise.c_final} is larger than noise.c0={noise.c0}.")
  if noise.anneal and noise.c is not None:
    problems.append("noise.c is a fixed scale but noise.anneal=True; set one of them.")
  if noise.nanil_scale != activations.DEFAULT_NANIL_SCALE and noise.mode != "nanil":
    problems.append(f"noise.nanil_scale={noise.nanil_scale!r} only applies to "
                    f"noise.mode='nanil', not {noise.mode!r}; leave it at the default.")
  # The schedules run traced inside the jitted step, where nothing checks their
  # values: check every value the run will use, once, here (after the checks of
  # their fields, which building a schedule would otherwise repeat with a raise).
  if not problems and (noise.anneal or noise.c is not None):
    _check_schedule(problems, noise_scale_schedule(noise), config.train.num_steps,
                    "noise scale c", "noise.c, or noise.c0, c_final and anneal_every")
  if not problems and config.optimizer.gradient_noise_eta:
    _check_schedule(
        problems, gradient_noise_schedule(config.optimizer), config.train.num_steps,
        "gradient-noise variance", "optimizer.gradient_noise_eta and gradient_noise_gamma")

  devices = config.num_devices or num_available_devices
  if config.num_devices > num_available_devices:
    problems.append(
        f"num_devices={config.num_devices} but only {num_available_devices} devices are "
        "visible; use 0 for all of them.")
  elif config.train.batch_size % devices:
    problems.append(
        f"train.batch_size={config.train.batch_size} does not split over {devices} "
        f"devices; use a multiple of {devices} (or set num_devices).")
  if problems:
    raise ConfigError(_message(config, problems))


def noise_scale_schedule(noise: ml_collections.ConfigDict) -> Callable[[Any], Any]:
  """The noisy units' ``c`` at each step: Paper A's annealing, or the fixed ``noise.c``."""
  if noise.anneal:
    return noisy_jax.schedules.noise_annealing(noise.c0, noise.c_final, noise.anneal_every)
  return lambda step: noise.c


def gradient_noise_schedule(optimizer: ml_collections.ConfigDict) -> Callable[[Any], Any]:
  """Paper B's gradient-noise variance at each update, ``eta / (1 + t)^gamma``."""
  return noisy_jax.schedules.gradient_noise_variance(
      optimizer.gradient_noise_eta, optimizer.gradient_noise_gamma)


def _check_schedule(problems, schedule, num_steps: int, what: str, fields: str) -> None:
  """Appends a problem if ``schedule`` is negative or not finite at any step of the run."""
  steps = jnp.arange(num_steps + 1)
  values = np.broadcast_to(np.asarray(schedule(steps)), steps.shape)
  bad = np.flatnonzero(~(np.isfinite(values) & (values >= 0)))
  if bad.size:
    step = int(bad[0])
    problems.append(
        f"the {what} is {values[step]} at step {step} (it must be finite and >= 0 at "
        f"every step 0..{num_steps}); fix {fields}.")


def _message(config, problems):
  label = f"{config.get('name', '?')}:{config.get('variant', '?')}"
  return f"Invalid config {label}:\n  - " + "\n  - ".join(problems)
