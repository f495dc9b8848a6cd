"""NTM on associative recall, Paper A (Gulcehre et al., 2016) Sec. 6.6, Fig. 11.

Variants (``--config=configs/associative_recall.py:<variant>``):

  regular          NTM with a plain sigmoid/tanh LSTM controller ("Regular NTM Controller")
  noisy_annealed   NTM whose controller and head gates are noisy (NAN), c annealed 30 -> 0.5
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

  config.model = ml_collections.ConfigDict()
  config.model.name = "ntm"  # noisy_jax.nn.NTMCell under nn.RNN, then a Dense bit readout.
  config.model.controller = "lstm"  # "lstm" or "feedforward" controller.
  config.model.controller_size = 100  # Controller units (Graves et al., LSTM controller: 100).
  config.model.memory_size = 128  # Memory locations N (Graves et al.: 128).
  config.model.memory_width = 20  # Width M of a location (Graves et al.: 20).
  config.model.num_read_heads = 1  # Read heads (Graves et al., LSTM controller: 1).
  config.model.num_write_heads = 1  # Write heads.
  config.model.shift_range = 1  # Each head shifts by -1, 0 or +1.
  config.model.unroll = 1  # Scan steps unrolled per loop iteration (speed only).

  config.optimizer.name = "rmsprop"  # Graves et al.: RMSProp with momentum 0.9, lr 1e-4.
  config.optimizer.learning_rate = 1e-4
  config.optimizer.momentum = 0.9
  config.optimizer.clip_value = 10.0  # Graves et al.: gradients clipped elementwise to (-10, 10).

  config.train.num_steps = 100_000  # Fig. 11 spans 100k updates.
  config.train.batch_size = 32
  config.train.log_every = 500
  config.train.eval_every = 2_000

  config.eval.num_examples = 512
  config.eval.metric = "bit_errors"  # Wrong output bits per episode (Graves et al.'s cost in bits).
  config.eval.success_threshold = 0.5  # "Nails the task": under half a wrong bit per episode.

  config.checkpoint.every = 5_000

  config.paper.metric = ("valid NLL ~0 after 10k updates (noisy) vs ~1.6 at 100k "
                         "(regular), read off Fig. 11")
  config.paper.source = "Paper A, Fig. 11"

  if variant == "noisy_annealed":
    config.noise.mode = "nan"  # Paper A does not name the variant; NAN is its best in Table 5.
    config.noise.anneal = True
  if variant == "lstm":
    config.model = ml_collections.ConfigDict()
    config.model.name = "lstm"  # A plain LSTM with a Dense bit readout.
    config.model.hidden_size = 256  # Graves et al.'s LSTM baseline has 3 x 256 units.
    config.model.unroll = 1  # Scan steps unrolled per loop iteration (speed only).

  if variant == "smoke":
    config = common.smoke(config)
    config.noise.mode = "nan"
    config.noise.anneal = True
    config.task.max_items = 3
    config.model.controller_size = 8
    config.model.memory_size = 8
    config.model.memory_width = 4
  return config
