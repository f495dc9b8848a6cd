"""Config validation, run before anything is built or compiled.

Every field of every section is declared here with its type and allowed values; a
config with an unknown (e.g. misspelt) field, a wrong type or an impossible value
fails with one ``ValueError`` that lists every problem and how to fix it.
"""

import difflib
import math
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

import noisy_jax.schedules
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


class ConfigError(ValueError):
  """A config that cannot run; the message lists every problem found."""


class Field(NamedTuple):
  types: tuple[type, ...]
  check: Callable[[Any], str | None] | None = None  # returns a complaint, or None
  optional: bool = False  # None allowed


def _at_least(low):
  return lambda v: None if v >= low else f"must be >= {low}"


def _positive(v):
  return None if v > 0 else "must be > 0"


def _choice(*options):
  return lambda v: None if v in options else f"must be one of {', '.join(map(repr, options))}"


_INT, _FLOAT, _BOOL, _STR = (int,), (float, int), (bool,), (str,)

COMMON = {
    "name": Field(_STR),
    "variant": Field(_STR),
    "seed": Field(_INT, _at_least(0)),
    "num_seeds": Field(_INT, _at_least(1)),
    "num_devices": Field(_INT, _at_least(0)),
    "shared_data": Field(_BOOL),
}
SECTIONS = {
    "noise": {
        "mode": Field(_STR, _choice(*NOISE_MODES)),
        "nanil_scale": Field(_STR, _choice(*activations.NANIL_SCALES)),
        "c": Field(_FLOAT, _at_least(0.0), optional=True),
        "alpha": Field(_FLOAT, optional=True),
        "anneal": Field(_BOOL),
        "c0": Field(_FLOAT, _at_least(0.0)),
        "c_final": Field(_FLOAT, _at_least(0.0)),
        "anneal_every": Field(_INT, _at_least(1)),
    },
    "optimizer": {
        "name": Field(_STR, _choice(*OPTIMIZERS)),
        "learning_rate": Field(_FLOAT, _positive),
        "momentum": Field(_FLOAT, lambda v: None if 0 <= v < 1 else "must be in [0, 1)"),
        "clip_norm": Field(_FLOAT, _at_least(0.0)),
        "clip_value": Field(_FLOAT, _at_least(0.0)),
        "gradient_noise_eta": Field(_FLOAT, _at_least(0.0)),
        "gradient_noise_gamma": Field(_FLOAT, _at_least(0.0)),
    },
    "train": {
        "num_steps": Field(_INT, _at_least(1)),
        "batch_size": Field(_INT, _at_least(1)),
        "log_every": Field(_INT, _at_least(1)),
        "eval_every": Field(_INT, _at_least(1)),
        "on_nonfinite": Field(_STR, _choice("stop", "freeze")),
    },
    "eval": {
        "num_examples": Field(_INT, _at_least(0)),
        "seed": Field(_INT, _at_least(0)),
        "metric": Field(_STR),
        "success_threshold": Field(_FLOAT),
    },
    "checkpoint": {
        "every": Field(_INT, _at_least(1)),
        "max_to_keep": Field(_INT, _at_least(1)),
    },
    "paper": {
        "value": Field(_FLOAT, optional=True),
        "metric": Field(_STR),
        "source": Field(_STR),
    },
}
TASK_FIELDS = {
    "unique_integers": {
        "length": Field(_INT, _at_least(1)),
        "num_values": Field(_INT, _at_least(2)),
        "curriculum_start": Field(_INT, _at_least(0)),
        "curriculum_steps": Field(_INT, _at_least(1)),
    },
    "associative_recall": {
        "min_items": Field(_INT, _at_least(2)),
        "max_items": Field(_INT, _at_least(2)),
        "item_len": Field(_INT, _at_least(1)),
        "bits": Field(_INT, _at_least(1)),
    },
    "copy": {
        "min_length": Field(_INT, _at_least(1)),
        "max_length": Field(_INT, _at_least(1)),
        "bits": Field(_INT, _at_least(1)),
    },
    "repeat_copy": {
        "min_length": Field(_INT, _at_least(1)),
        "max_length": Field(_INT, _at_least(1)),
        "min_repeats": Field(_INT, _at_least(1)),
        "max_repeats": Field(_INT, _at_least(1)),
        "bits": Field(_INT, _at_least(1)),
    },
    "digits": {
        "data_dir": Field(_STR),
    },
}
MODEL_FIELDS = {
    "lstm_mlp": {
        "hidden_size": Field(_INT, _at_least(1)),
        "mlp_size": Field(_INT, _at_least(1)),
        "input_encoding": Field(_STR, _choice("one_hot", "embedding")),
        "embed_size": Field(_INT, _at_least(1)),
        "forget_bias": Field(_FLOAT),
        "unroll": Field(_INT, _at_least(1)),
    },
    "lstm": {
        "hidden_size": Field(_INT, _at_least(1)),
        "unroll": Field(_INT, _at_least(1)),
    },
    "mlp": {
        "num_layers": Field(_INT, _at_least(0)),
        "width": Field(_INT, _at_least(1)),
        "init": Field(_STR, _choice("simple", "zero", "good")),
        "init_std": Field(_FLOAT, _positive),
    },
    "ntm": {
        "controller": Field(_STR, _choice("lstm", "feedforward")),
        "controller_size": Field(_INT, _at_least(1)),
        "memory_size": Field(_INT, _at_least(1)),
        "memory_width": Field(_INT, _at_least(1)),
        "num_read_heads": Field(_INT, _at_least(1)),
        "num_write_heads": Field(_INT, _at_least(1)),
        "shift_range": Field(_INT, _at_least(0)),
        "unroll": Field(_INT, _at_least(1)),
    },
}


_ALL_PATHS = sorted({
    *COMMON,
    *(f"{section}.{name}" for section, fields in SECTIONS.items() for name in fields),
    *(f"task.{name}" for fields in TASK_FIELDS.values() for name in fields),
    *(f"model.{name}" for fields in MODEL_FIELDS.values() for name in fields),
})


def _type_name(types):
  return " or ".join(t.__name__ for t in types)


def _check_fields(section: Any, fields: dict[str, Field], where: str, problems: list[str],
                  subsections: tuple[str, ...] = ()):
  if not isinstance(section, ml_collections.ConfigDict):
    problems.append(f"{where} must be a ConfigDict section, got {type(section).__name__}.")
    return
  present = set(section.keys())
  known = [*fields, *subsections]
  for name in sorted(present - set(known)):
    close = difflib.get_close_matches(name, known, n=1)
    elsewhere = [path for path in _ALL_PATHS if path.rsplit(".", 1)[-1] == name]
    if f"{where}{name}" in elsewhere:
      hint = f" It belongs to another {where.rstrip('.')}.name."
    elif close:
      hint = f" Did you mean {where}{close[0]}?"
    elif elsewhere:
      hint = f" Did you mean {elsewhere[0]}?"
    else:
      hint = ""
    problems.append(
        f"Unknown field {where}{name}.{hint} Valid fields here: {', '.join(sorted(known))}.")
  for name in subsections:
    if name not in present:
      problems.append(f"Missing section {where}{name}.")
  for name, field in fields.items():
    path = f"{where}{name}"
    if name not in present:
      problems.append(f"Missing field {path} ({_type_name(field.types)}).")
      continue
    value = section[name]
    if value is None:
      if not field.optional:
        problems.append(f"{path} must be set ({_type_name(field.types)}), got None.")
      continue
    if isinstance(value, bool) and bool not in field.types or not isinstance(value, field.types):
      problems.append(
          f"{path} must be {_type_name(field.types)}, got {value!r} "
          f"({type(value).__name__}).")
      continue
    if isinstance(value, float) and not math.isfinite(value):
      problems.append(f"{path} must be finite, got {value!r}.")
      continue
    complaint = field.check(value) if field.check else None
    if complaint:
      problems.append(f"{path} {complaint}, got {value!r}.")


def _check_range(problems, section, where, low, high):
  if section[low] > section[high]:
    problems.append(
        f"{where}.{low}={section[low]} is larger than {where}.{high}={section[high]}.")


def validate(config: ml_collections.ConfigDict, num_available_devices: int) -> None:
  """Raises :class:`ConfigError` listing every problem of ``config``; returns None if none.

  Args:
    config: an experiment config (configs/<name>.py).
    num_available_devices: devices the run may use (``jax.device_count()``).
  """
  problems: list[str] = []
  _check_fields(config, COMMON, "", problems, subsections=("task", "model", *SECTIONS))
  for name, fields in SECTIONS.items():
    if name in config:
      _check_fields(config[name], fields, f"{name}.", problems)

  task_name = config.task.get("name") if "task" in config else None
  model_name = config.model.get("name") if "model" in config else None
  if task_name not in TASKS:
    problems.append(f"task.name must be one of {', '.join(map(repr, TASKS))}, got {task_name!r}.")
  else:
    _check_fields(config.task, {"name": Field(_STR), **TASK_FIELDS[task_name]}, "task.", problems)
  if model_name not in MODELS:
    problems.append(
        f"model.name must be one of {', '.join(map(repr, MODELS))}, got {model_name!r}.")
  else:
    _check_fields(config.model, {"name": Field(_STR), **MODEL_FIELDS[model_name]}, "model.",
                  problems)
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
