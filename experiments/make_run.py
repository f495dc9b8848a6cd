r"""``make run``: both papers' effects in under three minutes on 2 CPU cores.

  python -m experiments.make_run [--outdir=runs/make_run]

Two comparisons, each variant training several seeds at once (``jax.vmap``), into
``<outdir>/<experiment>/<variant>``; then the curves (``<outdir>/<experiment>_curves.png``,
chance drawn dashed) and the table (``<outdir>/report.md``, with every seed's final
number and the paired per-seed difference), which it prints:

1. **Paper B** (Table 1, Exp. 3): 20 ReLU layers of 50 units, initialised
   N(0, 0.1^2), on the 8x8 digits; SGD at 0.1 with global-norm clipping at 10;
   without and with annealed gradient noise (eta = 0.01, gamma = 0.55). 6 seeds,
   8,000 updates (the full config: 20 seeds, 20,000). The signal of this net
   shrinks at every layer, and plain SGD never leaves chance; the noise lets most
   seeds learn.
2. **Paper A** (Table 5): the unique-integer counting LSTM, the plain
   ``reference`` against ``nan`` (every gate and tanh unit a noisy hard unit with
   the reference code's c and alpha). 4 seeds, 1,200 updates of a 32-unit LSTM and
   MLP at Adam 3e-2 (full config: 128 units, Adam 1e-3, 50,000 updates). Both
   start on the plateau of predicting the most common count (55.4 % error);
   within this budget the plain LSTM stays on it and the noisy one leaves it.

Each pair of variants shares every setting but its ingredient, and run i of both
has the same seed (initial parameters). The learning rate of (2) was picked on the
CPU to make the point quickly: at Adam 1e-2 two of four plain seeds, and every
noisy seed, had left the plateau by update 3,000 (so there the noise speeds the
escape up rather than making it possible; at 3e-2 the plain seeds were still on it
at 3,000); docs/RESULTS.md has Table 5 at length. The budgets keep the whole job
under three minutes on 2 cores (about 2.5 measured).
"""

import pathlib
import time
from types import ModuleType
from typing import Any, NamedTuple

from absl import app
from absl import flags
from absl import logging
import ml_collections

from configs import deep_mlp
from configs import unique_integers
from experiments import metrics
from experiments import report
from experiments import train


class Comparison(NamedTuple):
  """Variants of one experiment that differ only in the ingredient they test."""

  config_module: ModuleType  # a configs/ file: get_config(variant)
  variants: tuple[str, ...]  # the first is the baseline of the paired differences
  overrides: dict[str, Any]  # the same for every variant: the CPU-sized budget


COMPARISONS = (
    Comparison(deep_mlp, ("simple_clip10_nonoise_lr0.1", "simple_clip10_noise_lr0.1"), {
        "num_seeds": 6,
        "train.num_steps": 8000,
        "train.log_every": 500,
        "train.eval_every": 500,
        "checkpoint.every": 8000,
    }),
    Comparison(unique_integers, ("reference", "nan"), {
        "num_seeds": 4,
        "model.hidden_size": 32,
        "model.mlp_size": 32,
        "optimizer.learning_rate": 3e-2,
        "train.num_steps": 1200,
        "train.log_every": 100,
        "train.eval_every": 100,
        "eval.num_examples": 1000,
        "checkpoint.every": 1200,
    }),
)


def small_config(comparison: Comparison, variant: str) -> ml_collections.ConfigDict:
  """The ``variant`` config of ``comparison`` with its ``overrides``."""
  config = comparison.config_module.get_config(variant)
  config.update_from_flattened_dict(comparison.overrides)
  return config


def run(outdir: str | pathlib.Path,
        comparisons: tuple[Comparison, ...] = COMPARISONS) -> str:
  """Trains every variant of ``comparisons`` into ``outdir``; returns the report's Markdown."""
  outdir = pathlib.Path(outdir)
  for comparison in comparisons:
    for variant in comparison.variants:
      config = small_config(comparison, variant)
      start = time.perf_counter()
      train.train_and_evaluate(config, outdir / config.name / variant)
      logging.info("%s:%s done in %.0f s.", config.name, variant, time.perf_counter() - start)
  order = tuple(v for comparison in comparisons for v in comparison.variants)
  return report.make_report(outdir, order=order)


def main(argv):
  del argv
  metrics.quiet_orbax_logs()
  start = time.perf_counter()
  outdir = pathlib.Path(flags.FLAGS.outdir)
  print(run(outdir))
  names = sorted({c.config_module.get_config(c.variants[0]).name for c in COMPARISONS})
  print("Plots: " + ", ".join(str(outdir / f"{name}_curves.png") for name in names))
  logging.info("make run took %.0f s.", time.perf_counter() - start)


if __name__ == "__main__":
  flags.DEFINE_string("outdir", "runs/make_run", "Where the runs, the plots and report.md go.")
  app.run(main)
