r"""``make run``: a small real comparison on CPU, the reference LSTM vs the NAN-annealed LSTM.

  python -m experiments.make_run [--outdir=runs]

Trains Paper A's unique-integer task (Table 5) twice -- ``reference`` (plain LSTM+MLP)
and ``nan_annealed`` (noisy LSTM, c annealed from 30 to 0.5) -- each with several
seeds at once, into ``<outdir>/unique_integers/<variant>``, then writes the learning
curves (``<outdir>/unique_integers_curves.png``) and prints the table
(``<outdir>/report.md``). A few minutes on 2 CPU cores.

The budget is tiny next to the paper's (which needs about 720k updates just to
anneal c to 0.5): the model is smaller, the steps fewer (4,000), and the annealing
clock runs 200 times faster (``SMALL``), so c still goes from 30 down to the
paper's final 0.5 within the run. Both variants share everything else, including
the seeds (hence the initial parameters) and the data. The full-size configs are
``configs/unique_integers.py:<variant>``, e.g. on a GPU:

  python -m experiments.main --config=configs/unique_integers.py:nan_annealed \
      --workdir=runs/unique_integers/nan_annealed
"""

import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from configs import unique_integers
from experiments import metrics
from experiments import report
from experiments import train

VARIANTS = ("reference", "nan_annealed")
# Overrides of the full configs that make the comparison fit in a few CPU minutes;
# the same for both variants.
SMALL = {
    "num_seeds": 4,
    "model.hidden_size": 32,
    "model.mlp_size": 32,
    "optimizer.learning_rate": 3e-3,
    "train.batch_size": 64,
    "train.num_steps": 4000,
    "train.log_every": 100,
    "train.eval_every": 200,
    "eval.num_examples": 1000,
    "checkpoint.every": 1000,
    # The paper's c0 / sqrt(t + 1) with t counting single updates instead of blocks of
    # 200: c falls from 30 to the floor 0.5 at update 3600, inside the run.
    "noise.anneal_every": 1,
}


def small_config(variant: str):
  """The ``variant`` config of unique_integers.py with the ``SMALL`` overrides."""
  config = unique_integers.get_config(variant)
  config.update_from_flattened_dict(SMALL)
  return config


def run(outdir: str | pathlib.Path) -> str:
  """Trains both variants into ``outdir`` and returns the report's Markdown."""
  outdir = pathlib.Path(outdir)
  for variant in VARIANTS:
    start = time.perf_counter()
    train.train_and_evaluate(small_config(variant), outdir / "unique_integers" / variant)
    logging.info("%s done in %.0f s.", variant, time.perf_counter() - start)
  return report.make_report(outdir, order=VARIANTS)


def main(argv):
  del argv
  metrics.quiet_orbax_logs()
  print(run(flags.FLAGS.outdir))
  print(f"Plot: {pathlib.Path(flags.FLAGS.outdir) / 'unique_integers_curves.png'}")


if __name__ == "__main__":
  flags.DEFINE_string("outdir", "runs", "Where the runs, the plot and report.md go.")
  app.run(main)
