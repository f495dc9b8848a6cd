"""The saturation diagnostics: what fraction of each group of units saturates, the noise
it injects and the spread of its ``p``, computed only when asked for.

Against float64 references written from the papers (``tests/reference.py``), with
the library's own draws fed to both sides.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import noisy_jax
import noisy_jax.nn
from noisy_jax import activations
from noisy_jax import ntm
from noisy_jax import rnn
from noisy_jax._src import activations as activations_src
from noisy_jax._src import noise
from tests import _helpers
from tests import reference
from tests import reference_rnn

UnitNoise = noisy_jax.UnitNoise
B, T, D, H = 6, 7, 3, 4
KINDS = ("hard_tanh", "hard_sigmoid", "tanh", "sigmoid")


def _saturating_inputs(kind, shape=(4000,), seed=0):
  """Inputs on both sides of x_t, most of them saturated, the kinks included."""
  x_t = reference.x_t(kind)
  x = np.array(jax.random.uniform(jax.random.key(seed), shape, minval=-3 * x_t,
                                    maxval=3 * x_t))
  x[:4] = [x_t, -x_t, np.nextafter(np.float32(x_t), 0), 0.0]
  return x.astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode,nanil_scale", [("nan", "reference"), ("nah", "reference"),
                                              ("nani", "reference"), ("nanis", "reference"),
                                              ("nanil", "reference"), ("nanil", "paper")])
def test_noise_std_is_the_papers_sigma_for_every_mode(kind, mode, nanil_scale):
  x = _saturating_inputs(kind)
  p = np.asarray(jax.random.uniform(jax.random.key(1), x.shape, minval=-1.0, maxval=1.0))
  xi = np.asarray(jax.random.normal(jax.random.key(2), x.shape))
  c = 0.7
  got = activations.noise_std(x, p, UnitNoise(kind, mode, c=c, nanil_scale=nanil_scale), xi)
  x64, p64, xi64 = (np.asarray(a, np.float64) for a in (x, p, xi))
  want = {
      "nan": reference.sigma(x64, p64, c, kind),
      "nah": reference.sigma(x64, p64, c, kind),
      "nani": np.full(x.shape, c),
      "nanis": np.where(np.abs(x64) >= reference.x_t(kind), c, 0.0),
      "nanil": reference.nanil_sigma(x64, xi64, p64, c, kind, nanil_scale),
  }[mode]
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


def test_noise_std_is_the_spread_of_the_noise_the_unit_injects():
  """Over many draws at a fixed x, NAN's output spreads by exactly noise_std (Eq. 12)."""
  x = jnp.asarray([-3.0, -1.5, 1.2, 2.0, 4.0])  # all saturated (hard-tanh)
  p = jnp.asarray([0.5, -1.0, 2.0, 1.0, -0.3])
  unit = UnitNoise("hard_tanh", "nan", c=1.5)
  keys = jax.random.split(jax.random.key(3), 20_000)
  outputs = jax.vmap(lambda k: noisy_jax.noisy_activation(x, k, p, c=1.5, mode="nan"))(keys)
  np.testing.assert_allclose(outputs.std(axis=0), activations.noise_std(x, p, unit),
                             rtol=0.03)


def test_noise_std_of_nanil_reference_needs_the_draw():
  with pytest.raises(ValueError, match="xi="):
    activations.noise_std(jnp.ones(3), 1.0, UnitNoise("hard_tanh", "nanil"))
  with pytest.raises(ValueError, match="seed="):
    activations.unit_statistics(jnp.ones(3), 1.0, UnitNoise("hard_tanh", "nanil"))


@pytest.mark.parametrize("kind", KINDS)
def test_saturated_includes_the_threshold(kind):
  x = _saturating_inputs(kind)
  np.testing.assert_array_equal(activations.saturated(x, kind=kind),
                                np.abs(x.astype(np.float64)) >= reference.x_t(kind))


def test_unit_statistics_of_a_group_and_a_masked_one():
  unit = UnitNoise("hard_sigmoid", "nanis", c=0.3)
  x = jnp.asarray([[0.0, 2.0, -5.0], [1.0, 1.9, 3.0]])
  p = jnp.asarray([1.0, 2.0, 4.0])
  stats = activations.unit_statistics(x, p, unit)
  np.testing.assert_allclose(stats, (3 / 6, 0.3 * 3 / 6, np.std([1.0, 2.0, 4.0])), rtol=1e-6)
  masked = activations.unit_statistics(x, p, unit, where=jnp.asarray([[True], [False]]))
  np.testing.assert_allclose(masked.saturated, 2 / 3, rtol=1e-6)
  quiet = activations.unit_statistics(x, p, unit, noisy=False)
  np.testing.assert_allclose(quiet, (3 / 6, 0.0, 0.0))


def _reference_statistics(cell, xs, params, draws, sigmoid, tanh, lengths):
  """Float64 loop: each gate's pre-activations at every valid step, then their statistics."""
  sigmoid, tanh = _helpers.resolved(sigmoid), _helpers.resolved(tanh)
  p = {name: np.asarray(value, np.float64) for name, value in params.items()}
  xs = np.asarray(xs, np.float64)
  blocks = lambda a, n: np.split(a, n, axis=-1)
  pre = {gate: [] for gate in rnn.CELLS[cell].gates}
  draw = {gate: [] for gate in rnn.CELLS[cell].gates}
  hidden = np.zeros((B, H))
  state = (np.zeros((B, H)), hidden) if cell == "lstm" else hidden
  for t in range(T):
    h_prev = state[1] if cell == "lstm" else state
    z = xs[:, t] @ p["input_kernel"] + p["bias"]
    r = h_prev @ p["recurrent_kernel"]
    xi = [np.asarray(a, np.float64) for a in draws[t]]
    if cell == "lstm":
      values = dict(zip(("input", "forget", "output", "candidate"), blocks(z + r, 4)))
      new_state = reference_rnn.lstm_step(state, xs[:, t], params, draws[t], sigmoid, tanh)
      values["cell"] = new_state[0]
      noise_of = dict(zip(("input", "forget", "output"), blocks(xi[0], 3)),
                      candidate=xi[1], cell=xi[2])
    else:
      z_r, z_u, z_n = blocks(z, 3)
      r_r, r_u, r_n = blocks(r, 3)
      xi_r, xi_u = blocks(xi[0], 2)
      reset = reference_rnn.unit(z_r + r_r, xi_r, blocks(p["p_gates"], 2)[0], sigmoid, True)
      values = {"reset": z_r + r_r, "update": z_u + r_u,
                "candidate": z_n + reset * (r_n + p["recurrent_bias"])}
      new_state = reference_rnn.gru_step(state, xs[:, t], params, draws[t], sigmoid, tanh)
      noise_of = {"reset": xi_r, "update": xi_u, "candidate": xi[1]}
    valid = t < lengths
    for gate in values:
      pre[gate].append(values[gate][valid])
      draw[gate].append(noise_of[gate][valid])
    state = jax.tree.map(lambda new, old: np.where(valid[:, None], new, old), new_state, state)
  spec = rnn.CELLS[cell]
  p_of = dict(zip(spec.sigmoid_gates, blocks(p["p_gates"], len(spec.sigmoid_gates))),
              candidate=p["p_candidate"], **({"cell": p["p_cell"]} if cell == "lstm" else {}))
  statistics = {}
  for gate in values:
    unit = sigmoid if gate in spec.sigmoid_gates else tanh
    x, xi = np.concatenate(pre[gate]), np.concatenate(draw[gate])
    if unit.mode == "nanil":
      sigma = reference.nanil_sigma(x, xi, p_of[gate], unit.c, unit.kind, unit.nanil_scale)
    else:
      sigma = reference.sigma(x, p_of[gate], unit.c, unit.kind)
    statistics[gate] = ((np.abs(x) >= reference.x_t(unit.kind)).mean(), sigma.mean(),
                        p_of[gate].std())
  return statistics


@pytest.mark.parametrize("cell,sigmoid,tanh", [
    ("lstm", UnitNoise("hard_sigmoid", "nanil", c=0.5), UnitNoise("hard_tanh", "nah", c=0.9)),
    ("gru", UnitNoise("hard_sigmoid", "nah"), UnitNoise("hard_tanh", "nan", c=0.8)),
])
def test_sequence_statistics_match_a_float64_loop_over_the_valid_steps(cell, sigmoid, tanh):
  params = _helpers.rnn_params(cell, D, H, 0, 1.5)
  xs, key = _helpers.inputs((B, T, D), 1), jax.random.key(7)
  lengths = np.asarray([7, 3, 5, 1, 7, 6])
  shapes = ((B, 3 * H), (B, H), (B, H)) if cell == "lstm" else ((B, 2 * H), (B, H))
  draws = [[noise.standard_normal(k, s, jnp.float32)
            for k, s in zip(jax.random.split(step_key, len(shapes)), shapes)]
           for step_key in jax.random.split(jax.random.clone(key), T)]
  weights = rnn.CELLS[cell].weights_type(**params)
  *_, got = rnn.sequence(cell, xs, weights, key, sigmoid=sigmoid, tanh=tanh,
                         seq_lengths=lengths, statistics=True)
  want = _reference_statistics(cell, xs, params, draws, sigmoid, tanh, lengths)
  assert set(got) == set(want)
  for gate, values in want.items():
    np.testing.assert_allclose(got[gate], values, rtol=1e-4, atol=1e-6, err_msg=gate)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_scanned_step_gives_the_sequences_statistics(cell):
  """rnn.step(statistics=True) at each step averages to rnn.sequence(statistics=True)."""
  params = _helpers.rnn_params(cell, D, H, 0, 1.5)
  weights = rnn.CELLS[cell].weights_type(**params)
  xs, key = _helpers.inputs((B, T, D), 1), jax.random.key(5)
  sigmoid = UnitNoise("hard_sigmoid", "nanil")
  *_, whole = rnn.sequence(cell, xs, weights, jax.random.clone(key), sigmoid=sigmoid,
                           statistics=True)
  carry = jnp.zeros((B, H)) if cell == "gru" else (jnp.zeros((B, H)),) * 2
  steps = []
  for t, step_key in enumerate(jax.random.split(key, T)):
    x_proj = rnn.input_projection(xs[:, t], weights.input_kernel, weights.bias)
    carry, _, statistics = rnn.step(cell, carry, x_proj, weights, step_key, sigmoid=sigmoid,
                                    statistics=True)
    steps.append(statistics)
  mean = jax.tree.map(lambda *values: np.mean(values), *steps)
  for gate in whole:
    np.testing.assert_allclose(whole[gate], mean[gate], rtol=1e-5, atol=1e-7, err_msg=gate)


def _ntm_problem(controller):
  shapes = ntm.weight_shapes(controller, D, 8, 16, 4)
  keys = iter(jax.random.split(jax.random.key(0), 32))
  make = lambda s: 1.5 * jax.random.normal(next(keys), s)
  weights = ntm.NTMWeights(
      ntm.controller_spec(controller).weights_type(*map(make, shapes["controller"].values())),
      *(make(s) for name, s in shapes.items() if name != "controller"))
  state = ntm.initial_state((B,), controller=controller, features=8, memory_size=16,
                            memory_width=4)
  return state, jnp.ones((B, D)), weights


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_ntm_statistics_cover_every_gate_and_match_the_head_gates_inputs(controller):
  state, x, weights = _ntm_problem(controller)
  key = jax.random.key(1)
  _, _, statistics = ntm.ntm_step(state, x, weights, key, controller=controller,
                                  statistics=True)
  assert sorted(statistics) == sorted(ntm.gate_names(controller))
  # The interpolation gates' inputs, by hand: the clipped head map of the controller output.
  _, output = ntm.ntm_step(state, x, weights, jax.random.clone(key), controller=controller)
  hidden = output[:, :8]
  layout = ntm.head_layout(4, 1, 1, 1)
  start = 2 * 4 + 2  # after the content keys (K M) and key strengths (K)
  raw = jnp.clip(hidden @ weights.head_kernel + weights.head_bias, -20, 20)[:, start:start + 2]
  assert layout.interpolation_gate == (2,)
  np.testing.assert_allclose(statistics["interpolation"].saturated,
                             np.mean(np.abs(raw) >= 2.0), rtol=1e-6)
  np.testing.assert_allclose(statistics["interpolation"].p_spread, np.std(weights.p_gate),
                             rtol=1e-5)


def _forbid_unit_statistics(monkeypatch):
  """From here on, computing unit statistics raises; the library's jitted parts trace again."""

  def refuse(*args, **kwargs):
    raise AssertionError("unit statistics computed although nobody asked for them")

  monkeypatch.setattr(activations_src, "unit_statistics", refuse)
  jax.clear_caches()


def _layer_problems():
  x = _helpers.inputs((2, 5, 3), 1, scale=3.0)
  lstm = noisy_jax.nn.NoisyLSTM(4)
  cell = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NoisyGRUCell(4))
  ntm_rnn = noisy_jax.nn.noisy_rnn(noisy_jax.nn.NTMCell(8, memory_size=8, memory_width=4))
  return x, {"lstm_layer": lstm, "gru_cell": cell, "ntm_cell": ntm_rnn}


@pytest.mark.parametrize("name", ["lstm_layer", "gru_cell", "ntm_cell"])
def test_statistics_are_sown_only_when_asked_for_and_change_nothing(name, monkeypatch):
  x, modules = _layer_problems()
  module = modules[name]
  rngs = {"params": jax.random.key(0), "noise": jax.random.key(1)}
  variables = module.init(rngs, x)
  assert set(variables) == {"params"}  # init sows nothing
  apply = lambda v, **kw: module.apply(v, x, rngs={"noise": jax.random.key(2)}, **kw)
  y, sown = apply(variables, mutable=["intermediates"])
  statistics = jax.tree.leaves(sown)
  assert statistics and all(np.isfinite(np.asarray(leaf)).all() for leaf in statistics)
  np.testing.assert_array_equal(y, apply(variables))
  loss = lambda params, **kw: jnp.sum(jnp.sin(jax.tree.leaves(apply({"params": params}, **kw))[0]))
  grads = jax.grad(loss)(variables["params"])
  grads_with = jax.grad(lambda p: loss(p, mutable=["intermediates"]))(variables["params"])
  jax.tree.map(np.testing.assert_array_equal, grads, grads_with)

  _forbid_unit_statistics(monkeypatch)
  jax.jit(apply)(variables)  # neither traced nor computed without the collection
  with pytest.raises(AssertionError, match="nobody asked"):
    apply(variables, mutable=["intermediates"])


def test_the_defaults_inject_noise_where_units_saturate_and_paper_nanil_barely_does():
  """What the diagnostics are for: a noisy unit at its defaults injects noise where it
  saturates, and NANIL read literally (Eq. 9 as its scale) injects almost none."""
  x = _helpers.inputs((8, 10, 3), 1, scale=3.0)
  rngs = {"params": jax.random.key(0), "noise": jax.random.key(1)}

  def statistics(**units):
    layer = noisy_jax.nn.NoisyLSTM(16, kernel_init=nn.initializers.normal(2.0), **units)
    variables = layer.init(rngs, x)
    _, sown = layer.apply(variables, x, rngs={"noise": jax.random.key(2)},
                          mutable=["intermediates"])
    return sown["intermediates"]["unit_statistics"][0]

  defaults = statistics()
  for gate, stats in defaults.items():
    assert stats.saturated > 0.05, gate
    assert stats.noise_std > 1e-3, gate
  nanil = {scale: statistics(sigmoid=UnitNoise("hard_sigmoid", "nanil", nanil_scale=scale),
                             tanh=UnitNoise("hard_tanh", "nanil", nanil_scale=scale))
           for scale in ("reference", "paper")}
  for gate in defaults:
    assert nanil["reference"][gate].noise_std > 20 * nanil["paper"][gate].noise_std, gate


@pytest.mark.skipif(not hasattr(nnx, "capture"), reason="nnx.capture is newer than this flax")
@pytest.mark.parametrize("cls", ["lstm_layer", "gru_layer"])
def test_nnx_layers_sow_the_linen_statistics_under_capture_only(cls, monkeypatch):
  params = _helpers.random_params(_helpers.shapes_of(cls, D, H), seed=5, scale=3.0)
  model = _helpers.load_params(
      _helpers.nnx_module(cls, D, H, rngs=nnx.Rngs(params=0), zero_init=True), params)
  xs = _helpers.inputs((B, T, D), scale=2.0)
  keys = jax.random.split(jax.random.key(6), T)
  lengths = jnp.array([T, 2, T, 3, 1, T])
  _, sown = _helpers.linen_module(cls, H).apply(
      {"params": params}, xs, rng=keys, seq_lengths=lengths, mutable=["intermediates"])
  want = sown["intermediates"]["unit_statistics"][0]
  ys, captured = nnx.capture(model, nnx.Intermediate)(xs, rngs=jax.random.clone(keys),
                                                      seq_lengths=lengths)
  (got,) = captured["unit_statistics"].get_value()
  assert sorted(got) == sorted(want)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, want)
  np.testing.assert_array_equal(ys, model(xs, rngs=jax.random.clone(keys), seq_lengths=lengths))

  _forbid_unit_statistics(monkeypatch)
  model(xs, rngs=jax.random.clone(keys))  # not captured: nothing computed
  with pytest.raises(AssertionError, match="nobody asked"):
    nnx.capture(model, nnx.Intermediate)(xs, rngs=jax.random.clone(keys))
