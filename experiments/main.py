r"""Trains and evaluates one experiment config.

  python -m experiments.main --config=configs/unique_integers.py:nan_annealed \
      --workdir=runs/unique_integers/nan_annealed [--config.num_seeds=8]

Re-running the same command resumes from the newest checkpoint in the workdir.
"""

import json
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import checkpoints
from experiments import lock
from experiments import metrics
from experiments import train
from experiments import validation

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: configs/<name>.py:<variant>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run (checkpoints, metrics).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first (one process per host); "
    "a cluster manager (SLURM, a TPU pod, ...) is detected, or give the three flags below.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "With --multihost: host:port of process 0, e.g. "
    "127.0.0.1:12355 for several processes on this machine.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "With --multihost: how many processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "With --multihost: this process's index, 0..num_processes-1.")
flags.mark_flags_as_required(["config", "workdir"])


# What a run can meet that a user fixes: each ends the program with its one-line message
# (its traceback too with --verbosity=1 or more).
_USER_ERRORS = (validation.ConfigError, lock.WorkdirLockedError, checkpoints.CheckpointError,
                train.NonFiniteLossError, OSError)


def _one_line(error: BaseException) -> str:
  """The message of ``error`` on one line, with the fix for a file-system error."""
  if isinstance(error, OSError):  # none of the runner's own errors is one
    return (f"{error.strerror or error} ({error.filename or _WORKDIR.value}). Fix: give "
            "--workdir a writable directory on a disk with free space.")
  return " ".join(str(error).split())


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}. Fix: pass every option as a flag, "
             "e.g. --config.train.num_steps=100; see --help.")
  given = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value,
           "process_id": _PROCESS_ID.value}
  given = {name: value for name, value in given.items() if value is not None}
  if given and not _MULTIHOST.value:
    sys.exit(f"error: {', '.join('--' + name for name in given)} given without --multihost. "
             "Fix: add --multihost, or drop them for a single process.")
  if _MULTIHOST.value:
    jax.distributed.initialize(**given)  # without them: the cluster's environment
  metrics.quiet_orbax_logs()
  logging.info("JAX devices: %s", jax.devices())
  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except _USER_ERRORS as error:
    if logging.get_verbosity() >= 1:
      raise
    sys.exit(f"error: {_one_line(error)}")
  print(json.dumps(result["summary"], indent=2))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag or config override ending in one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as error:
    if isinstance(error, AttributeError) and error.args and isinstance(error.args[0], KeyError):
      error = error.args[0]  # a misspelt field of a section: the KeyError below, wrapped
    if isinstance(error, KeyError) and error.args:
      # ml_collections: KeyError("'<field>'\nDid you mean ...?") for an unknown field.
      field, *hint = str(error.args[0]).split("\n")
      message = f"unknown config field {field}" + (f" ({' '.join(hint)})" if hint else "")
    else:
      message = " ".join(str(error).split())
    sys.exit(f"error: bad command-line flag: {message}. Fix: spell "
             "--config.<field> overrides as the config file names its fields (each is "
             "commented there), with a value of the field's type; see --helpfull.")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
