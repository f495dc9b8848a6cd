"""Training steps per second of an LSTM encoder-decoder that learns addition (issue 17).

The workload of flax's seq2seq example, written here from its description: the
inputs are ``"a+b"`` with ``a, b < 1000`` as one-hot characters (13 symbols,
padded to 7), the targets the digits of ``a + b`` after a start symbol (padded to
4 + 1); an encoder ``nn.RNN`` reads the inputs, its final carry starts a decoder
``nn.RNN`` fed the targets (teacher forcing), a ``Dense`` layer gives the logits;
one training step is the forward pass, the masked softmax cross-entropy, the
backward pass and an Adam (1e-3) update, batch 128, hidden size 128.

Timed interleaved (``harness.compare``): flax's ``nn.LSTMCell`` (the baseline) and
``noisy_jax.nn.NoisyLSTMCell`` with its default noise, both scanned by ``nn.RNN``
(the cell path of decoders and custom loops), and the noisy cell with
``deterministic=True``.

Usage: ``python -m benchmarks.bench_seq2seq [--repeats R] [--outdir DIR]``. Writes the
``seq2seq`` section of ``benchmarks/results/<device>.json`` and the device's table in
``benchmarks/results/<device>.md``.
"""

import argparse
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import noisy_jax.nn
from benchmarks import harness

SECTION = "seq2seq"
MARKDOWN_HEADING = "## Encoder-decoder on addition (issue 17)"
VOCAB = "0123456789+= "  # "=" starts the answer, " " pads
INPUT_LENGTH, OUTPUT_LENGTH = 7, 5
BATCH, HIDDEN, LEARNING_RATE = 128, 128, 1e-3
FLAX, NOISY, DETERMINISTIC = ("flax nn.LSTMCell", "NoisyLSTMCell",
                              "NoisyLSTMCell (deterministic)")
GOAL = 2.0  # issue 17: noisy step time / flax step time


def addition_batch(seed: int, batch: int = BATCH) -> dict[str, np.ndarray]:
  """One-hot ``a+b`` inputs and ``=digits`` targets, with a mask of the answer's steps."""
  rng = np.random.default_rng(seed)
  a, b = rng.integers(0, 1000, batch), rng.integers(0, 1000, batch)
  encode = lambda text, length: [VOCAB.index(ch) for ch in text.ljust(length)]
  inputs = np.array([encode(f"{x}+{y}", INPUT_LENGTH) for x, y in zip(a, b)])
  targets = np.array([encode(f"={x + y}", OUTPUT_LENGTH) for x, y in zip(a, b)])
  one_hot = np.eye(len(VOCAB), dtype=np.float32)
  return {"inputs": one_hot[inputs], "decoder_inputs": one_hot[targets[:, :-1]],
          "labels": targets[:, 1:], "mask": (targets[:, 1:] != VOCAB.index(" "))}


class Seq2seq(nn.Module):
  """Encoder ``nn.RNN``, its carry into a teacher-forced decoder ``nn.RNN``, a ``Dense``."""

  cell_factory: Any

  @nn.compact
  def __call__(self, inputs, decoder_inputs):
    encoder = noisy_jax.nn.noisy_rnn(self.cell_factory(), return_carry=True, name="encoder")
    carry, _ = encoder(inputs)
    decoder = noisy_jax.nn.noisy_rnn(self.cell_factory(), name="decoder")
    return nn.Dense(len(VOCAB))(decoder(decoder_inputs, initial_carry=carry))


def models() -> dict[str, Seq2seq]:
  return {
      FLAX: Seq2seq(lambda: nn.LSTMCell(HIDDEN, parent=None)),
      NOISY: Seq2seq(lambda: noisy_jax.nn.NoisyLSTMCell(HIDDEN, parent=None)),
      DETERMINISTIC: Seq2seq(
          lambda: noisy_jax.nn.NoisyLSTMCell(HIDDEN, deterministic=True, parent=None)),
  }


def train_step_fn(model: Seq2seq):
  """``(params, opt_state, batch, key) -> (params, opt_state, loss)``."""
  tx = optax.adam(LEARNING_RATE)

  def loss_fn(params, batch, key):
    logits = model.apply(params, batch["inputs"], batch["decoder_inputs"],
                         rngs={"noise": key})
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
    mask = batch["mask"].astype(losses.dtype)
    return jnp.sum(losses * mask) / jnp.sum(mask)

  def step(params, opt_state, batch, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step, tx


def main(outdir=None, *, repeats: int = 20) -> dict[str, Any]:
  batch = jax.tree.map(jnp.asarray, addition_batch(0))
  fns, all_params, all_states = {}, [], []
  for index, (name, model) in enumerate(models().items()):
    params = model.init({"params": jax.random.key(1), "noise": jax.random.key(2)},
                        batch["inputs"], batch["decoder_inputs"])
    step, tx = train_step_fn(model)
    all_params.append(params)
    all_states.append(tx.init(params))
    # compare() feeds every function the same arguments: each picks its own entry.
    fns[name] = functools.partial(
        lambda i, step, params, states, batch, key: step(params[i], states[i], batch, key),
        index, step)
  timings = harness.compare(fns, tuple(all_params), tuple(all_states), batch,
                            jax.random.key(3), baseline=FLAX, repeats=repeats)
  results = {
      "config": {"batch": BATCH, "hidden": HIDDEN, "input_length": INPUT_LENGTH,
                 "output_length": OUTPUT_LENGTH, "vocab": len(VOCAB), "repeats": repeats},
      "timings": timings,
      "steps_per_s": {name: 1.0 / t["median_s"] for name, t in timings.items()},
      "time_over_flax": {name: 1.0 / t["ratio"] for name, t in timings.items()},
      "goal_time_over_flax": GOAL,
  }
  for name in timings:
    print(f"  {name:32s} time / flax {results['time_over_flax'][name]:.3f}, "
          f"{results['steps_per_s'][name]:.1f} steps/s")
  path = harness.publish("bench_seq2seq", SECTION, MARKDOWN_HEADING, results, table, outdir)
  print(f"  wrote {path}")
  return results


def table(results: dict) -> str:
  """The markdown table of a results section, as run or as loaded from its JSON file."""
  env, config = results["environment"], results["config"]
  absolute = env["platform"] != "cpu"
  lines = [
      harness.provenance(env) + f": LSTM encoder-decoder training step on "
      f"addition (batch {config['batch']}, hidden {config['hidden']}), median of "
      f"{config['repeats']} interleaved rounds.",
      "",
      "| cell | time / flax nn.LSTMCell |" + (" steps/s |" if absolute else ""),
      "|---|---|" + ("---|" if absolute else ""),
  ]
  for name in (FLAX, NOISY, DETERMINISTIC):  # the run's order (JSON sorts the keys)
    ratio = results["time_over_flax"][name]
    lines.append(f"| {name} | {ratio:.2f} |"
                 + (f" {results['steps_per_s'][name]:.1f} |" if absolute else ""))
  return "\n".join(lines)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=20, help="interleaved timing rounds")
  parser.add_argument("--outdir", default=None)
  args = parser.parse_args()
  main(args.outdir, repeats=args.repeats)
