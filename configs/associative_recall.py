"""NTM on associative recall, Paper A (Gulcehre et al., 2016) Sec. 6.6, Fig. 11.

Variants (``--config=configs/associative_recall.py:<variant>``):

  regular          NTM with a plain sigmoid/tanh LSTM controller ("Regular NTM Controller")
  noisy_annealed   NTM whose controller and head gates are noisy (NAN), c annealed from 30
  lstm             an LSTM without memory (Graves et al.'s baseline)
  smoke            a few steps of a tiny NTM, for the tests

Paper A trains with 2..16 items and shows only curves: the noisy controller's
validation NLL reaches about 0 within about 10k updates, the regular one is at
about 1.6 after 100k (read off Fig. 11). The item format (3 six-bit vectors
between delimiters) and the NTM and optimizer settings are Graves et al.'s (LSTM
controller of 100 units, 128 x 20 memory, one read and one write head, RMSProp
1e-4 with momentum 0.9, elementwise clipping at 10); Paper A does not give its own.
"""

import ml_collections

from configs import common

VARIANTS = ("regular", "noisy_annealed", "lstm", "smoke")


def get_config(variant: str = "noisy_annealed") -> ml_collections.ConfigDict:
  """The config of ``variant`` (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(
        f"Unknown associative_recall variant {variant!r}. Valid: {', '.join(VARIANTS)}.")
  config = common.base_config("associative_recall", variant)
  config.num_seeds = 4

  config.task = ml_collections.ConfigDict()
  config.task.name = "associative_recall"  # The generator in noisy_jax.tasks.
  config.task.min_items = 2  # Fewest items per episode (Paper A: 2).
  config.task.max_items = 16  # Most items per episode (Paper A: 16; Graves et al.: 6).
  config.task.item_len = 3  # Binary vectors per item (Graves et al.: 3).
  config.task.bits = 6  # Bits per vector (Graves et al.: 6).

  config = common.graves_ntm(config)
  config.train.num_steps = 100_000  # Fig. 11 spans 100k updates.

  config.paper.metric = ("valid NLL ~0 after 10k updates (noisy) vs ~1.6 at 100k "
                         "(regular), read off Fig. 11")
  config.paper.source = "Paper A, Fig. 11"

  if variant == "noisy_annealed":
    config.noise.mode = "nan"  # Paper A does not name the variant; NAN is its best in Table 5.
    config.noise.anneal = True
  if variant == "lstm":
    config.model = ml_collections.ConfigDict()
    config.model.name = "lstm"  # A plain LSTM with a Dense bit readout.
    config.model.hidden_size = 256  # One layer of 256 (Graves et al.'s baseline stacks 3 x 256).
    config.model.unroll = 1  # Scan steps unrolled per loop iteration (speed only).

  if variant == "smoke":
    config = common.smoke(config)
    config.noise.mode = "nan"
    config.noise.anneal = True
    config.task.max_items = 3
    config.model.controller_size = 8
    config.model.memory_size = 8
    config.model.memory_width = 4
  return common.locked(config)
