"""Porting flax code from its LSTM/GRU cells: converters, the plain preset, noise settings.

The encoder-decoder below is written in the shape of flax's seq2seq example (an
``nn.RNN`` encoder returning its carry, a decoder cell that wraps an LSTM cell whose
``features`` is not its carry's width, a ``Dense`` head and a sampling stream of its
own, split by the decoder's ``nn.RNN``). The port swaps the cell class, adds the
noise key at ``apply`` and ``"noise": True`` to each ``nn.RNN``'s ``split_rngs``.
"""

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import noisy_jax.nn
import noisy_jax.nnx

VOCAB, HIDDEN, LENGTH = 6, 16, 4


class DecoderCell(nn.RNNCellBase):
  """One decoder step: the LSTM on the previous token, logits, a sampled next token."""

  features: int
  vocab_size: int
  cell: Callable[..., nn.RNNCellBase]

  @nn.compact
  def __call__(self, carry, x):
    lstm_state, _ = carry
    lstm_state, y = self.cell(self.features, name="lstm")(lstm_state, x)
    logits = nn.Dense(self.vocab_size)(y)
    token = jax.random.categorical(self.make_rng("sample"), logits)
    return (lstm_state, jax.nn.one_hot(token, self.vocab_size)), logits

  @property
  def num_feature_axes(self) -> int:
    return 1


class Seq2Seq(nn.Module):
  """Encoder ``nn.RNN(cell(hidden))`` -> carry -> teacher-forced decoder."""

  hidden_size: int
  vocab_size: int
  cell: Callable[..., nn.RNNCellBase] = nn.LSTMCell
  encoder_split_rngs: Mapping[str, bool] = nn.FrozenDict({"params": False})
  decoder_split_rngs: Mapping[str, bool] = nn.FrozenDict({"params": False, "sample": True})

  @nn.compact
  def __call__(self, encoder_inputs, decoder_inputs):
    encoder = nn.RNN(self.cell(self.hidden_size), return_carry=True,
                     split_rngs=dict(self.encoder_split_rngs), name="encoder")
    decoder = nn.RNN(
        DecoderCell(decoder_inputs.shape[-1], self.vocab_size, self.cell),
        split_rngs=dict(self.decoder_split_rngs), name="decoder")
    state, _ = encoder(encoder_inputs)
    return decoder(decoder_inputs[:, :-1], initial_carry=(state, decoder_inputs[:, 0]))


FLAX = Seq2Seq(HIDDEN, VOCAB)
NOISY = Seq2Seq(HIDDEN, VOCAB, cell=noisy_jax.nn.NoisyLSTMCell,
                encoder_split_rngs=nn.FrozenDict(noisy_jax.nn.RNN_SPLIT_RNGS),
                decoder_split_rngs=nn.FrozenDict({"params": False, "sample": True,
                                                  "noise": True}))


def copy_batch(key, batch: int = 32, dtype=jnp.float32):
  """Copy task: ``LENGTH`` random tokens in, the same tokens out after a start token 0."""
  tokens = jax.random.randint(key, (batch, LENGTH), 1, VOCAB)
  encoder_inputs = jax.nn.one_hot(tokens, VOCAB, dtype=dtype)
  decoder_inputs = jax.nn.one_hot(
      jnp.concatenate([jnp.zeros((batch, 1), tokens.dtype), tokens], axis=1), VOCAB, dtype=dtype)
  return encoder_inputs, decoder_inputs


def loss_fn(model, params, batch, rngs, **settings):
  encoder_inputs, decoder_inputs = batch
  with noisy_jax.nn.noise_settings(**settings):
    logits = model.apply({"params": params}, encoder_inputs, decoder_inputs, rngs=rngs)
  return optax.softmax_cross_entropy(logits, decoder_inputs[:, 1:]).mean()


def _perturbed(tree, seed: int = 0):
  """Every leaf moved by U[-0.3, 0.3] so that zero-initialised biases count too."""
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(treedef, [
      leaf + jnp.asarray(rng.uniform(-0.3, 0.3, leaf.shape), leaf.dtype) for leaf in leaves])


def _port_params(tree: Mapping[str, Any]) -> dict[str, Any]:
  """The flax model's parameters with every ``nn.LSTMCell`` converted.

  A cell named automatically changes its name with its class (``LSTMCell_0`` ->
  ``NoisyLSTMCell_0``); one named explicitly (the decoder's ``"lstm"``) keeps it.
  """
  ported = {}
  for name, subtree in tree.items():
    if isinstance(subtree, Mapping) and "hi" in subtree:  # an LSTMCell's dense names
      ported[name.replace("LSTMCell", "NoisyLSTMCell")] = noisy_jax.nn.params_from_flax(
          subtree, nn.LSTMCell)
    else:
      ported[name] = _port_params(subtree) if isinstance(subtree, Mapping) else subtree
  return ported


def test_ported_seq2seq_with_plain_preset_reproduces_flax():
  """Converted weights, PLAIN cells: the ported model's logits are flax's, in float64."""
  with jax.enable_x64(True):
    batch = copy_batch(jax.random.key(0), 8, jnp.float64)
    plain = NOISY.clone(cell=functools.partial(noisy_jax.nn.NoisyLSTMCell,
                                                 **noisy_jax.nn.PLAIN,
                                                 param_dtype=jnp.float64))
    flax_model = FLAX.clone(cell=functools.partial(nn.LSTMCell, param_dtype=jnp.float64))
    rngs = {"params": jax.random.key(1), "sample": jax.random.key(2)}
    flax_params = _perturbed(flax_model.init(rngs, *batch)["params"])
    expected = flax_model.apply({"params": flax_params}, *batch, rngs={"sample": rngs["sample"]})
    got = plain.apply({"params": _port_params(flax_params)}, *batch,
                      rngs={"sample": rngs["sample"]})
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_plain_preset_declares_exactly_flax_weights():
  x = jnp.ones((2, 5, 3))
  init = lambda cell: jax.eval_shape(nn.RNN(cell).init, jax.random.key(0), x)["params"]["cell"]
  assert set(init(noisy_jax.nn.NoisyLSTMCell(4, **noisy_jax.nn.PLAIN))) == {
      "input_kernel", "recurrent_kernel", "bias"}
  assert {"p_gates", "p_candidate"} <= set(init(noisy_jax.nn.NoisyGRUCell(4)))


def test_ported_seq2seq_trains_with_noise_and_evaluates_without_key():
  """Training draws fresh noise (two keys, two losses) and lowers the loss; evaluation
  under noise_settings(deterministic=True) needs no noise key; init needs none either."""
  batch = copy_batch(jax.random.key(0))
  params = NOISY.init({"params": jax.random.key(1), "sample": jax.random.key(2)},
                      *batch)["params"]
  optimizer = optax.adam(0.01)

  @jax.jit
  def train_step(params, opt_state, key):
    data_key, noise_key, sample_key = jax.random.split(key, 3)
    loss, grads = jax.value_and_grad(functools.partial(loss_fn, NOISY))(
        params, copy_batch(data_key), {"noise": noise_key, "sample": sample_key})
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def evaluate(params):
    return loss_fn(NOISY, params, batch, {"sample": jax.random.key(3)}, deterministic=True)

  rngs = {"sample": jax.random.key(3)}
  noisy_losses = [float(loss_fn(NOISY, params, batch, {**rngs, "noise": jax.random.key(k)}))
                  for k in (4, 5)]
  assert noisy_losses[0] != noisy_losses[1]
  before = float(evaluate(params))
  opt_state = optimizer.init(params)
  for step in range(60):
    params, opt_state, _ = train_step(params, opt_state, jax.random.key(100 + step))
  after = float(evaluate(params))
  assert np.isfinite(after) and after < 0.5 * before, (before, after)


def test_noise_settings_anneal_c_traced_without_retrace():
  """c set for the whole model inside jit: a new value neither retraces nor is ignored;
  c = 0 removes the noise (the outputs no longer depend on the noise key)."""
  batch = copy_batch(jax.random.key(0), 8)
  params = NOISY.init({"params": jax.random.key(1), "sample": jax.random.key(2)},
                      *batch)["params"]
  traces = []

  @jax.jit
  def loss(params, c, noise_key):
    traces.append(None)
    return loss_fn(NOISY, params, batch, {"noise": noise_key, "sample": jax.random.key(3)},
                   c=c)

  key_a, key_b = jax.random.key(4), jax.random.key(5)
  quiet = [float(loss(params, 0.0, key)) for key in (key_a, key_b)]
  loud = [float(loss(params, 3.0, key)) for key in (key_a, key_b)]
  assert len(traces) == 1
  assert quiet[0] == quiet[1]
  assert loud[0] != loud[1]


def test_noise_settings_nest_and_yield_to_call_arguments():
  cell = noisy_jax.nn.NoisyLSTMCell(4)
  x = jnp.ones((2, 3)) * 3.0
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  variables = cell.init(jax.random.key(1), carry, x)
  apply = functools.partial(cell.apply, variables, carry, x)
  with noisy_jax.nn.noise_settings(deterministic=True):
    expected = apply()[1]  # no noise key needed
    with noisy_jax.nn.noise_settings(deterministic=False):
      with pytest.raises(ValueError, match="needs the 'noise' RNG stream"):
        apply()
    with noisy_jax.nn.noise_settings(c=2.0):  # inner c, outer deterministic kept
      assert not np.allclose(apply()[1], expected)
  with noisy_jax.nn.noise_settings(deterministic=False):
    np.testing.assert_array_equal(apply(deterministic=True)[1], expected)
  evaluate = noisy_jax.nn.noise_settings(deterministic=True)(cell.apply)  # as a decorator
  np.testing.assert_array_equal(evaluate(variables, carry, x)[1], expected)
  np.testing.assert_array_equal(evaluate(variables, carry, x)[1], expected)  # reusable
  with pytest.raises(ValueError, match="kinds entry"):
    with noisy_jax.nn.noise_settings(c=1.0, kinds=("gates",)):
      pass


def test_missing_noise_stream_error_names_module_and_split_rngs_fix():
  """The user's own split_rngs without the noise stream: the error names the cell's
  path and says to add "noise": True to that split_rngs."""
  batch = copy_batch(jax.random.key(0), 2)
  broken = NOISY.clone(decoder_split_rngs=nn.FrozenDict({"params": False, "sample": True}))
  variables = jax.eval_shape(broken.init, {"params": jax.random.key(1),
                                           "sample": jax.random.key(2)}, *batch)
  rngs = {"noise": jax.random.key(3), "sample": jax.random.key(4)}
  with pytest.raises(ValueError) as error:
    jax.eval_shape(lambda v: broken.apply(v, *batch, rngs=rngs), variables)
  message = str(error.value)
  assert "NoisyLSTMCell at /DecoderCell_0/lstm needs" in message
  assert "add 'noise': True to the split_rngs already there" in message


def test_noisy_rnn_keeps_user_split_rngs():
  rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyLSTMCell(4),
                               split_rngs={"params": False, "sample": True})
  assert rnn.split_rngs == {"params": False, "sample": True, "noise": True}


def test_step_takes_hidden_size_from_carry_as_flax():
  cell = noisy_jax.nn.NoisyLSTMCell(features=VOCAB)  # as the example's decoder
  carry = (jnp.zeros((2, HIDDEN)), jnp.zeros((2, HIDDEN)))
  variables = jax.eval_shape(cell.init, jax.random.key(0), carry, jnp.ones((2, 3)))
  assert variables["params"]["recurrent_kernel"].shape == (HIDDEN, 4 * HIDDEN)


def test_layer_carry_width_error_names_features():
  layer = noisy_jax.nn.NoisyLSTM(4, deterministic=True)
  x = jnp.ones((2, 5, 3))
  variables = layer.init(jax.random.key(0), x)
  wide = (jnp.zeros((2, 8)), jnp.zeros((2, 8)))
  with pytest.raises(ValueError, match=r"features=4 .*features=8"):
    layer.apply(variables, x, initial_carry=wide)


_LINEN_CELLS = [(nn.LSTMCell, noisy_jax.nn.NoisyLSTMCell),
                (nn.OptimizedLSTMCell, noisy_jax.nn.NoisyLSTMCell),
                (nn.GRUCell, noisy_jax.nn.NoisyGRUCell)]


@pytest.mark.parametrize("flax_cell,noisy_cell", _LINEN_CELLS,
                         ids=[c.__name__ for c, _ in _LINEN_CELLS])
def test_linen_converters_equal_outputs_and_round_trip(flax_cell, noisy_cell):
  """Float64: flax's nn.RNN == the PLAIN cell under nn.RNN == the whole-sequence layer,
  with converted weights; to_flax(from_flax(p)) == p exactly."""
  layer = {noisy_jax.nn.NoisyLSTMCell: noisy_jax.nn.NoisyLSTM,
           noisy_jax.nn.NoisyGRUCell: noisy_jax.nn.NoisyGRU}[noisy_cell]
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6, 5)))
    reference = nn.RNN(flax_cell(7, param_dtype=jnp.float64))
    flax_params = _perturbed(reference.init(jax.random.key(0), x)["params"]["cell"])
    expected = reference.apply({"params": {"cell": flax_params}}, x)
    params = noisy_jax.nn.params_from_flax(flax_params, flax_cell)
    cell = nn.RNN(noisy_cell(7, **noisy_jax.nn.PLAIN, param_dtype=jnp.float64))
    layer_out = layer(7, **noisy_jax.nn.PLAIN, param_dtype=jnp.float64).apply(
        {"params": params}, x)
    np.testing.assert_allclose(cell.apply({"params": {"cell": params}}, x), expected,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer_out, expected, rtol=0, atol=1e-12)
    back = noisy_jax.nn.params_to_flax(params, flax_cell)
  assert jax.tree.structure(back) == jax.tree.structure(flax_params)
  jax.tree.map(np.testing.assert_array_equal, back, flax_params)


def test_linen_converter_refuses_other_cells():
  with pytest.raises(TypeError, match="flax_cell must be one of"):
    noisy_jax.nn.params_from_flax({}, nn.SimpleCell)


_NNX_CELLS = [(nnx.LSTMCell, noisy_jax.nnx.NoisyLSTMCell),
              (nnx.OptimizedLSTMCell, noisy_jax.nnx.NoisyLSTM),
              (nnx.GRUCell, noisy_jax.nnx.NoisyGRUCell)]


@pytest.mark.parametrize("flax_cell,noisy_cls", _NNX_CELLS,
                         ids=[c.__name__ for c, _ in _NNX_CELLS])
def test_nnx_copy_params_equal_outputs_and_round_trip(flax_cell, noisy_cls):
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6, 5)))
    source = flax_cell(5, 7, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    nnx.update(source, _perturbed(nnx.state(source, nnx.Param)))
    expected = nnx.RNN(source)(x)
    noisy = noisy_cls(5, 7, **noisy_jax.nnx.PLAIN, param_dtype=jnp.float64,
                      rngs=nnx.Rngs(1))
    noisy_jax.nnx.copy_params(source, noisy)
    got = noisy(x) if isinstance(noisy, noisy_jax.nnx.NoisyLSTM) else nnx.RNN(noisy)(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    target = flax_cell(5, 7, param_dtype=jnp.float64, rngs=nnx.Rngs(2))
    noisy_jax.nnx.copy_params(noisy, target)
  for a, b in zip(jax.tree.leaves(nnx.state(target, nnx.Param)),
                  jax.tree.leaves(nnx.state(source, nnx.Param))):
    np.testing.assert_array_equal(a, b)


def test_nnx_copy_params_refuses_what_flax_cannot_hold():
  noisy = noisy_jax.nnx.NoisyGRUCell(3, 4, rngs=nnx.Rngs(0))
  noisy.recurrent_bias[...] = jnp.ones(4)
  with pytest.raises(ValueError, match="recurrent_bias is nonzero"):
    noisy_jax.nnx.copy_params(noisy, nnx.GRUCell(3, 4, rngs=nnx.Rngs(1)))
  with pytest.raises(TypeError, match=r"different kinds of cell \(lstm vs gru\)"):
    noisy_jax.nnx.copy_params(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(1)), noisy)
