"""Deep fully-connected network with gradient noise, Paper B (Neelakantan et al., 2015) Table 1.

20 hidden layers of 50 ReLU units, SGD without momentum at a fixed learning rate,
annealed gradient noise eta / (1 + t)^0.55 with eta = 0.01 (Paper B Sec. 4.1).

Variants are ``<init>_<clipping>_<noise>_lr<rate>``:

  init       simple (N(0, 0.1^2) weights), zero (all weights 0) or good (He et al.)
  clipping   noclip, clip100 or clip10 (global-norm threshold)
  noise      nonoise or noise
  rate       0.1 or 0.01

e.g. ``zero_clip10_noise_lr0.1``; Table 1's rows are

  Exp. 1  simple_noclip_*      Exp. 2  simple_clip100_*     Exp. 3  simple_clip10_*
  Exp. 5  good_clip10_*        Exp. 6  zero_clip10_*

(Exp. 4, Sussillo and Abbott's init, is not implemented), each ``nonoise`` and
``noise`` at both rates. ``smoke`` is a few steps of a small network for the tests.

The data default to scikit-learn's bundled 8x8 digits (offline); set
``task.data_dir`` to a directory with the four MNIST IDX files for Paper B's MNIST.
Paper B reports the best and average test accuracy over 20 runs per learning rate
(40 runs per row); its numbers come from MNIST, so with the 8x8 digits they are a
reference point, not a target.
"""

import itertools

import ml_collections

from configs import common

INITS = ("simple", "zero", "good")
CLIPPINGS = {"noclip": 0.0, "clip100": 100.0, "clip10": 10.0}
NOISES = {"nonoise": 0.0, "noise": 0.01}
RATES = ("0.1", "0.01")

# Paper B, Table 1: (best, average) test accuracy % over 40 runs (both rates).
PAPER_TABLE1 = {
    ("simple", "noclip", "nonoise"): (89.9, 43.1),
    ("simple", "noclip", "noise"): (96.7, 52.7),
    ("simple", "clip100", "nonoise"): (90.0, 46.3),
    ("simple", "clip100", "noise"): (96.7, 52.3),
    ("simple", "clip10", "nonoise"): (95.7, 51.6),
    ("simple", "clip10", "noise"): (97.0, 53.6),
    ("good", "clip10", "nonoise"): (97.4, 91.7),  # He et al. init (Exp. 5)
    ("good", "clip10", "noise"): (97.2, 91.7),
    ("zero", "clip10", "nonoise"): (11.4, 10.1),
    ("zero", "clip10", "noise"): (94.5, 49.7),
}
VARIANTS = tuple(
    f"{init}_{clip}_{noise}_lr{rate}"
    for init, clip, noise, rate in itertools.product(INITS, CLIPPINGS, NOISES, RATES)
) + ("smoke",)


def get_config(variant: str = "zero_clip10_noise_lr0.1") -> ml_collections.ConfigDict:
  """The config of ``variant`` (see the module docstring)."""
  if variant not in VARIANTS:
    raise ValueError(
        f"Unknown deep_mlp variant {variant!r}. Valid: <init>_<clipping>_<noise>_lr<rate> "
        f"with init in {INITS}, clipping in {tuple(CLIPPINGS)}, noise in {tuple(NOISES)}, "
        f"rate in {RATES} (e.g. 'zero_clip10_noise_lr0.1'), or 'smoke'."
    )
  config = common.base_config("deep_mlp", variant)
  config.num_seeds = 20  # Paper B: 20 runs per learning rate.
  config.shared_data = False

  config.task = ml_collections.ConfigDict()
  config.task.name = "digits"  # Image classification (experiments.input_pipeline.load_digits).
  config.task.data_dir = ""  # MNIST IDX directory; "" = scikit-learn's 8x8 digits.

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"  # A plain ReLU MLP with a softmax output layer.
  config.model.num_layers = 20  # Hidden layers (Paper B: 20).
  config.model.width = 50  # Units per hidden layer (Paper B: 50).
  config.model.init = "simple"  # "simple", "zero" or "good" (see the module docstring).
  config.model.init_std = 0.1  # Standard deviation of the "simple" init (Paper B: 0.1).

  config.optimizer.name = "sgd"  # Paper B: SGD without momentum, fixed learning rate.
  config.optimizer.momentum = 0.0

  config.train.num_steps = 20_000  # Paper B gives no budget; about 850 epochs of the 8x8 digits.
  config.train.batch_size = 64  # Not given in Paper B.
  config.train.log_every = 200
  config.train.eval_every = 2_000

  config.eval.num_examples = 0  # 0 = the whole test split.
  config.eval.metric = "accuracy_pct"  # Paper B reports test accuracy %.
  config.eval.success_threshold = 90.0  # Runs reaching 90 % test accuracy "succeed".

  config.checkpoint.every = 5_000

  config.paper.metric = "test accuracy % (MNIST)"
  config.paper.source = "Paper B, Table 1"

  if variant == "smoke":
    config = common.smoke(config)
    config.model.num_layers = 3
    config.model.width = 8
    config.optimizer.learning_rate = 0.1
    config.optimizer.clip_norm = 10.0
    config.optimizer.gradient_noise_eta = 0.01
    config.eval.metric = "accuracy_pct"
    return common.locked(config)

  init, clip, noise, rate = variant.split("_")
  config.model.init = init
  config.optimizer.clip_norm = CLIPPINGS[clip]
  config.optimizer.gradient_noise_eta = NOISES[noise]
  config.optimizer.learning_rate = float(rate[2:])
  paper = PAPER_TABLE1.get((init, clip, noise))
  # Table 1 pools both learning rates (40 runs) into one row, so a one-rate variant
  # has no number of its own: paper.value stays None, the row's numbers go in the
  # source line, and experiments/paper_b_table1.py pools our runs the same way.
  if paper is not None:
    config.paper.source = (f"Paper B, Table 1, both rates pooled: best {paper[0]} %, "
                           f"average {paper[1]} %")
  return common.locked(config)
