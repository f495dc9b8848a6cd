"""Noisy hard-tanh at a glance: a statistics table and the paper's Fig. 4 as a PNG.

Usage: ``python -m experiments.demo --outdir=runs/demo``.
"""

import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags

import noisy_jax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_OUTDIR = flags.DEFINE_string("outdir", "runs/demo", "Folder for the PNG.")
_ALPHAS = (0.9, 1.0, 1.1, 1.2)  # the values of the paper's Fig. 4


def statistics_table(num_keys: int = 4096) -> str:
  """Markdown table of phi's mean/std over keys and of the gradient in saturation."""
  x = jnp.asarray([0.5, 1.5, 3.0])
  keys = jax.random.split(jax.random.key(0), num_keys)
  rows = ["| mode | alpha | x | E[phi] (sampled) | E[phi] (Eq. 13) | std[phi] | P(dphi/dx != 0) |",
          "|---|---|---|---|---|---|---|"]
  for mode in ("nan", "nah"):
    for alpha in _ALPHAS:
      phi_fn = lambda x, k: noisy_jax.noisy_hard_tanh(x, k, 1.0, 1.0, alpha, mode)
      samples = jax.vmap(lambda k: phi_fn(x, k))(keys)
      grads = jax.vmap(lambda k: jax.vmap(jax.grad(phi_fn), (0, None))(x, k))(keys)
      expected = noisy_jax.noisy_hard_tanh(x, None, 1.0, 1.0, alpha, mode, deterministic=True)
      for i, xi in enumerate(np.asarray(x)):
        rows.append(
            f"| {mode} | {alpha} | {xi} | {float(samples[:, i].mean()):.4f} | "
            f"{float(expected[i]):.4f} | {float(samples[:, i].std()):.4f} | "
            f"{float((grads[:, i] != 0).mean()):.2f} |")
  return "\n".join(rows)


def plot_figure4(path: pathlib.Path) -> None:
  """Samples of noisy hard-tanh (half-normal noise) for alpha in {0.9, 1.0, 1.1, 1.2}."""
  x = jnp.linspace(-4, 4, 801)
  fig, axes = plt.subplots(1, len(_ALPHAS), figsize=(16, 3.6), sharey=True)
  keys = jax.random.split(jax.random.key(1), len(_ALPHAS))
  for ax, alpha, key in zip(axes, _ALPHAS, keys):
    y = noisy_jax.noisy_hard_tanh(x, key, 1.0, 1.0, alpha, "nah")
    mean = noisy_jax.noisy_hard_tanh(x, None, 1.0, 1.0, alpha, "nah", deterministic=True)
    ax.scatter(x, y, s=2, alpha=0.5, label="sample")
    ax.plot(x, noisy_jax.hard_tanh(x), "k--", lw=1, label="hard-tanh")
    ax.plot(x, mean, "r", lw=1.5, label="E[phi] (Eq. 13)")
    ax.set_title(f"alpha = {alpha}")
    ax.set_xlabel("x")
  axes[0].set_ylabel("phi(x, xi), half-normal noise, p = 1, c = 1")
  axes[0].legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  outdir = pathlib.Path(_OUTDIR.value)
  outdir.mkdir(parents=True, exist_ok=True)
  print(statistics_table())
  path = outdir / "noisy_hard_tanh_alpha.png"
  plot_figure4(path)
  print(f"\nwrote {path}")


if __name__ == "__main__":
  app.run(main)
