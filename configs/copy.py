"""NTM on copy and repeat copy (Graves et al., 2014, Secs. 4.1-4.2), regular vs noisy controller.

Variants (``--config=configs/copy.py:<variant>``):

  regular                NTM, plain sigmoid/tanh LSTM controller, copy of 1..20 vectors
  noisy_annealed         NTM, noisy (NAN) controller and head gates, c annealed from 30
  repeat_regular         as regular, on repeat copy (1..10 vectors, 1..10 repeats)
  repeat_noisy_annealed  as noisy_annealed, on repeat copy
  smoke                  a few steps of a tiny NTM, for the tests

Neither paper reports numbers for these tasks with noisy units; they are the other
two NTM tasks Paper A's associative-recall experiment is drawn from. Settings are
Graves et al.'s (8-bit vectors; LSTM controller of 100 units, 128 x 20 memory, one
read and one write head, RMSProp 1e-4 with momentum 0.9, elementwise clipping at 10).
"""

import ml_collections

from configs import common

VARIANTS = ("regular", "noisy_annealed", "repeat_regular", "repeat_noisy_annealed", "smoke")


def get_config(variant: str = "noisy_annealed") -> ml_collections.ConfigDict:
  """The config of ``variant`` (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(f"Unknown copy variant {variant!r}. Valid: {', '.join(VARIANTS)}.")
  config = common.base_config("copy", variant)
  config.num_seeds = 4

  config.task = ml_collections.ConfigDict()
  config.task.name = "copy"  # The generator in noisy_jax.tasks.
  config.task.min_length = 1  # Shortest sequence (Graves et al.: 1).
  config.task.max_length = 20  # Longest sequence (Graves et al.: 20).
  config.task.bits = 8  # Bits per vector (Graves et al.: 8).

  config = common.graves_ntm(config)
  config.train.num_steps = 50_000

  config.paper.metric = "no number in either paper"
  config.paper.source = "Graves et al. 2014, Figs. 3 and 7 (no noisy units)"

  if variant.startswith("repeat"):
    config.task = ml_collections.ConfigDict()
    config.task.name = "repeat_copy"  # Repeat copy (Graves et al., Sec. 4.2).
    config.task.min_length = 1  # Shortest sequence (Graves et al.: 1).
    config.task.max_length = 10  # Longest sequence (Graves et al.: 10).
    config.task.min_repeats = 1  # Fewest repeats (Graves et al.: 1).
    config.task.max_repeats = 10  # Most repeats (Graves et al.: 10).
    config.task.bits = 8  # Bits per vector (Graves et al.: 8).
  if variant.endswith("noisy_annealed"):
    config.noise.mode = "nan"  # Normal output noise on every controller and head gate.
    config.noise.anneal = True

  if variant == "smoke":
    config = common.smoke(config)
    config.task.max_length = 3
    config.model.controller = "feedforward"  # associative_recall's smoke covers the LSTM one.
    config.model.controller_size = 8
    config.model.memory_size = 8
    config.model.memory_width = 4
  return common.locked(config)
