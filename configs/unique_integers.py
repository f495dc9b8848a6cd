"""Unique-integer counting, Paper A (Gulcehre et al., 2016) Sec. 6.6, Table 5.

Variants (``--config=configs/unique_integers.py:<variant>``), one per row of Table 5:

  reference         LSTM+MLP, plain sigmoid/tanh units               (paper: 33.28 % test error)
  nan               Noisy LSTM+MLP, NAN units, fixed c                 (31.12 %)
  curriculum        LSTM+MLP trained on a length curriculum            (14.83 %)
  nan_annealed      Noisy LSTM+MLP, NAN, c annealed from 30            (9.53 %)
  nanil_annealed    Noisy LSTM+MLP, NANIL, c annealed from 30          (20.94 %)
  nan_annealed_curriculum  both (the paper's best models; no number given)
  smoke             a few steps of a tiny model, for the tests

The paper gives no sizes, optimizer or budget (PAPERS.md A.3.6): the defaults below
are ours and are the same for every row, so only the row's ingredient changes.

The annealing is the paper's, c_t = 30 / sqrt(floor(t / 200) + 1) floored at 0.5, so
at the default 50,000 updates c has come down to 1.9 only; the floor 0.5 is reached
after 720,000 updates (pass --config.train.num_steps=720000 for the paper's whole
schedule, or a smaller noise.anneal_every to compress it, as make run does).
"""

import ml_collections

from configs import common

# Paper A, Table 5: test error % of each row.
PAPER_TABLE5 = {
    "reference": 33.28,
    "nan": 31.12,
    "curriculum": 14.83,
    "nan_annealed": 9.53,
    "nanil_annealed": 20.94,
}
VARIANTS = (*PAPER_TABLE5, "nan_annealed_curriculum", "smoke")


def get_config(variant: str = "reference") -> ml_collections.ConfigDict:
  """The config of one row of Table 5 (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(
        f"Unknown unique_integers variant {variant!r}. Valid: {', '.join(VARIANTS)}."
    )
  config = common.base_config("unique_integers", variant)
  config.num_seeds = 5

  config.task = ml_collections.ConfigDict()
  config.task.name = "unique_integers"  # The generator in noisy_jax.tasks.
  config.task.length = 26  # Sequence length (Paper A: 26).
  config.task.num_values = 11  # Symbols 0..10 inclusive (Paper A: "between 0 and 10").
  # Curriculum: the training length grows linearly from curriculum_start to
  # `length` over curriculum_steps updates, every sequence of a batch having the
  # current length; curriculum_start = 0 turns it off. Evaluation is always at `length`.
  config.task.curriculum_start = 0
  config.task.curriculum_steps = 20_000  # Length of the linear ramp, in updates.

  config.model = ml_collections.ConfigDict()
  config.model.name = "lstm_mlp"  # LSTM -> masked time-mean pooling -> one-hidden-layer ReLU MLP.
  config.model.hidden_size = 128  # LSTM units (not given in the paper).
  config.model.mlp_size = 128  # Hidden ReLU units of the MLP (not given).
  config.model.input_encoding = "one_hot"  # "one_hot" or "embedding" of the integer inputs.
  config.model.embed_size = 16  # Embedding width (used only with "embedding").
  config.model.forget_bias = 0.0  # Initial bias of the LSTM's forget gate (others start at 0).
  config.model.unroll = 1  # Scan steps unrolled per loop iteration (speed only).

  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.clip_norm = 5.0  # Paper A clips at 5 in its other recurrent experiments.

  config.train.num_steps = 50_000
  config.train.batch_size = 64
  config.train.log_every = 200
  config.train.eval_every = 2_000

  config.eval.num_examples = 2_000
  config.eval.metric = "error_pct"  # Table 5 reports test error %.
  config.eval.success_threshold = 10.0  # About the paper's best row (9.53 %).

  config.checkpoint.every = 5_000

  config.paper.metric = "test error %"
  config.paper.source = "Paper A, Table 5"

  if variant in ("nan", "nan_annealed", "nan_annealed_curriculum"):
    config.noise.mode = "nan"  # Normal noise on the output of every gate and tanh unit (Eq. 12).
  if variant == "nanil_annealed":
    config.noise.mode = "nanil"  # Normal input noise with a learned scale (Sec. 5).
  if variant.endswith("annealed") or variant == "nan_annealed_curriculum":
    config.noise.anneal = True
  if variant in ("curriculum", "nan_annealed_curriculum"):
    config.task.curriculum_start = 5
  config.paper.value = PAPER_TABLE5.get(variant)

  if variant == "smoke":
    config = common.smoke(config)
    config.noise.mode = "nan"
    config.noise.anneal = True
    config.noise.anneal_every = 2
    config.task.curriculum_start = 3
    config.task.curriculum_steps = 3
    config.model.hidden_size = 8
    config.model.mlp_size = 8
  return common.locked(config)
