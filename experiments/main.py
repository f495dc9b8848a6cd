r"""Trains and evaluates one experiment config.

  python -m experiments.main --config=configs/unique_integers.py:nan_annealed \
      --workdir=runs/unique_integers/nan_annealed [--config.num_seeds=8]

Re-running the same command resumes from the newest checkpoint in the workdir.
"""

import json

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import lock
from experiments import metrics
from experiments import train
from experiments import validation

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: configs/<name>.py:<variant>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run (checkpoints, metrics).")
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() first (one process per host).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  if _MULTIHOST.value:
    jax.distributed.initialize()
  metrics.quiet_orbax_logs()
  logging.info("JAX devices: %s", jax.devices())
  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (validation.ConfigError, lock.WorkdirLockedError) as error:
    raise app.UsageError(str(error)) from error
  print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
  app.run(main)
