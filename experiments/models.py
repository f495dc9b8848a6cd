"""The experiments' models, built from a config's ``model`` and ``noise`` sections.

Every model is called as ``model.apply(variables, batch, c=c, deterministic=d,
rngs={"noise": key})`` with the batch dict of a task generator; ``c`` is the noise
scale of this step (a traced scalar when annealed, so annealing never retraces).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

import noisy_jax
import noisy_jax.nn


def forget_bias_init(forget_bias: float) -> nn.initializers.Initializer:
  """Zero biases except ``forget_bias`` on the forget gate's block (gate order i, f, o, g)."""
  def init(key, shape, dtype=jnp.float32):
    del key
    hidden = shape[-1] // 4
    return jnp.zeros(shape, dtype).at[..., hidden:2 * hidden].set(forget_bias)
  return init


def _units(noise: noisy_jax.UnitNoise | None, c) -> dict[str, Any]:
  """The noise fields of a noisy module: plain units, or every unit noisy with ``c``.

  ``noise`` is the config's ``noise`` section (its ``kind`` is ignored); every gate
  becomes a noisy hard-sigmoid and every tanh a noisy hard-tanh of that mode (Paper A
  replaces "all sigmoid and tanh"), both with the same ``c``: the annealed value, a
  fixed value, or (None) the reference defaults.
  """
  if noise is None:
    return noisy_jax.nn.PLAIN  # the papers' reference models: smooth units, no noise
  return dict(sigmoid=noise._replace(kind="hard_sigmoid", c=c),
              tanh=noise._replace(kind="hard_tanh", c=c))


def _lstm(noise: noisy_jax.UnitNoise | None, hidden_size: int, unroll: int, c,
          deterministic: bool, forget_bias: float = 0.0):
  """The recurrent layer of Paper A: plain sigmoid/tanh LSTM, or every unit noisy."""
  return noisy_jax.nn.NoisyLSTM(
      features=hidden_size, unroll=unroll, deterministic=deterministic,
      bias_init=forget_bias_init(forget_bias), **_units(noise, c))


class CountingLSTM(nn.Module):
  """Paper A's unique-integer model: LSTM, time-mean pooling, one-hidden-layer ReLU MLP.

  "an LSTM network over the input sequence, and performed a time average pooling
  over the hidden states ... into a simple (one hidden-layer) ReLU MLP" (Sec. 6.6).
  The pooling averages the valid steps only (``batch["mask"]``).
  """

  num_values: int  # input symbols, also the number of classes (counts 1..num_values)
  hidden_size: int
  mlp_size: int
  input_encoding: str = "one_hot"  # or "embedding"
  embed_size: int = 16
  noise: noisy_jax.UnitNoise | None = None  # None: plain units
  unroll: int = 1
  forget_bias: float = 0.0

  @nn.compact
  def __call__(self, batch: dict[str, jax.Array], *, c: Any = None,
               deterministic: bool = False) -> jax.Array:
    tokens, mask = batch["inputs"], batch["mask"]
    if self.input_encoding == "one_hot":
      x = jax.nn.one_hot(tokens, self.num_values)
    else:
      x = nn.Embed(self.num_values, self.embed_size)(tokens)
    h = _lstm(self.noise, self.hidden_size, self.unroll, c, deterministic, self.forget_bias)(
        x, seq_lengths=mask.sum(axis=1))
    weights = mask[..., None].astype(h.dtype)
    pooled = (h * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)
    hidden = nn.relu(nn.Dense(self.mlp_size)(pooled))
    return nn.Dense(self.num_values)(hidden)


class SequenceLSTM(nn.Module):
  """An LSTM reading an NTM-task episode and emitting per-step bit logits (a baseline)."""

  num_outputs: int  # bits per output step
  hidden_size: int
  noise: noisy_jax.UnitNoise | None = None  # None: plain units
  unroll: int = 1

  @nn.compact
  def __call__(self, batch: dict[str, jax.Array], *, c: Any = None,
               deterministic: bool = False) -> jax.Array:
    h = _lstm(self.noise, self.hidden_size, self.unroll, c, deterministic)(batch["inputs"])
    return nn.Dense(self.num_outputs)(h)


class NTM(nn.Module):
  """A Neural Turing Machine over the episode, then per-step bit logits (Paper A, Fig. 11).

  ``noise=None`` is the "regular NTM controller" (smooth sigmoid/tanh,
  no noise); otherwise every gate of the controller and of the heads is noisy, all
  with the step's ``c`` (Paper A: "NTM with noisy activations in the controller,
  with annealed noise").

  Note:
    Making the heads' interpolation and erase gates noisy too is our reading: the
    paper names only the controller, but those gates are the controller's
    outputs passed through saturating units. ``noisy_gates`` of
    :class:`noisy_jax.nn.NTMCell` restricts the noise to the controller.
  """

  num_outputs: int  # bits per output step
  controller: str = "lstm"
  controller_size: int = 100
  memory_size: int = 128
  memory_width: int = 20
  num_read_heads: int = 1
  num_write_heads: int = 1
  shift_range: int = 1
  noise: noisy_jax.UnitNoise | None = None  # None: plain units
  unroll: int = 1

  @nn.compact
  def __call__(self, batch: dict[str, jax.Array], *, c: Any = None,
               deterministic: bool = False) -> jax.Array:
    sizes = dict(
        features=self.controller_size, memory_size=self.memory_size,
        memory_width=self.memory_width, num_read_heads=self.num_read_heads,
        num_write_heads=self.num_write_heads, shift_range=self.shift_range,
        controller=self.controller, deterministic=deterministic)
    cell = noisy_jax.nn.NTMCell(**sizes, **_units(self.noise, c))
    h = noisy_jax.nn.noisy_rnn(cell, unroll=self.unroll)(batch["inputs"])
    return nn.Dense(self.num_outputs)(h)


def mlp_kernel_init(init: str, std: float = 0.1) -> nn.initializers.Initializer:
  """Paper B's initializations: ``"simple"`` N(0, std^2), ``"zero"``, ``"good"`` (He et al.)."""
  if init == "zero":
    return nn.initializers.zeros_init()
  if init == "good":
    return nn.initializers.he_normal()
  return nn.initializers.normal(std)


class DeepMLP(nn.Module):
  """Paper B's deep network: ``num_layers`` ReLU layers of ``width`` units, then class logits.

  Every weight matrix (the output layer's too) uses ``kernel_init``; biases start at 0.
  """

  num_classes: int
  num_layers: int = 20
  width: int = 50
  kernel_init: nn.initializers.Initializer = mlp_kernel_init("simple")

  @nn.compact
  def __call__(self, batch: dict[str, jax.Array], *, c: Any = None,
               deterministic: bool = False) -> jax.Array:
    del c, deterministic  # no noisy units: Paper B adds its noise to the gradient
    x = batch["inputs"]
    for _ in range(self.num_layers):
      x = nn.relu(nn.Dense(self.width, kernel_init=self.kernel_init)(x))
    return nn.Dense(self.num_classes, kernel_init=self.kernel_init)(x)


def build_model(config: ml_collections.ConfigDict, num_outputs: int) -> nn.Module:
  """The model named by ``config.model.name`` with ``num_outputs`` logits (per step)."""
  model = config.model
  noise = None
  if config.noise.mode != "none":
    noise = noisy_jax.UnitNoise("hard_tanh", config.noise.mode, alpha=config.noise.alpha,
                                nanil_scale=config.noise.nanil_scale)
  if model.name == "lstm_mlp":
    return CountingLSTM(
        num_values=num_outputs, hidden_size=model.hidden_size, mlp_size=model.mlp_size,
        input_encoding=model.input_encoding, embed_size=model.embed_size, noise=noise,
        unroll=model.unroll, forget_bias=model.forget_bias)
  if model.name == "lstm":
    return SequenceLSTM(num_outputs=num_outputs, hidden_size=model.hidden_size, noise=noise,
                        unroll=model.unroll)
  if model.name == "ntm":
    return NTM(num_outputs=num_outputs, controller=model.controller,
               controller_size=model.controller_size, memory_size=model.memory_size,
               memory_width=model.memory_width, num_read_heads=model.num_read_heads,
               num_write_heads=model.num_write_heads, shift_range=model.shift_range,
               noise=noise, unroll=model.unroll)
  if model.name == "mlp":
    return DeepMLP(num_classes=num_outputs, num_layers=model.num_layers, width=model.width,
                   kernel_init=mlp_kernel_init(model.init, model.init_std))
  raise ValueError(f"Unknown model.name={model.name!r}.")  # validation.py rejects it first
