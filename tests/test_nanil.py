"""NANIL (input noise with a learned scale) injects noise at its defaults, everywhere.

The paper's Eq. 9 read literally (``nanil_scale="paper"``) is inert at the paper's
values of c: sigma < c / 4 cannot push a saturated input back across x_t. These
tests pin that the default (the reference code's scale) does inject noise and
gives p a gradient, and that ``nanil_scale`` reaches every module that has a mode.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import noisy_jax
import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import rnn
from noisy_jax._src import noise
from tests import _helpers
from tests import reference

HARD_KINDS = ("hard_tanh", "hard_sigmoid")
# The saturated band of the issue: x_t < |x| < x_t + 2 (hard-tanh), x_t + 4 (hard-sigmoid).
BAND = {"hard_tanh": 2.0, "hard_sigmoid": 4.0}
N = 20_000


def _saturated_inputs(kind, key):
  key_magnitude, key_sign, key_p = jax.random.split(key, 3)
  x_t = reference.x_t(kind)
  magnitude = jax.random.uniform(key_magnitude, (N,), minval=x_t, maxval=x_t + BAND[kind])
  sign = jnp.where(jax.random.bernoulli(key_sign, 0.5, (N,)), 1.0, -1.0)
  p = jax.random.uniform(key_p, (N,), minval=-1.0, maxval=1.0)  # the paper's p init
  return magnitude * sign, p


@pytest.mark.parametrize("kind", HARD_KINDS)
def test_default_nanil_changes_saturated_outputs_and_trains_p(kind):
  x, p = _saturated_inputs(kind, jax.random.key(0))
  key = jax.random.key(1)
  xi = np.asarray(noise.standard_normal(key, x.shape, jnp.float32), np.float64)
  fn = lambda p, key: noisy_jax.noisy_activation(x, key, p, mode="nanil", kind=kind)
  y = fn(p, jax.random.clone(key))  # c=None: the reference default 0.25
  dp = jax.grad(lambda p: fn(p, jax.random.clone(key)).sum())(p)
  # The default is the reference code's form, to float precision...
  want = reference.noisy(x, xi, np.asarray(p), 0.25, None, "nanil", kind)
  np.testing.assert_allclose(y, want, atol=1e-6)
  # ...and it injects noise: at least 1 % of saturated outputs move (3.6 % / 1.8 %
  # measured), each with a gradient to p.
  changed = np.asarray(y != noisy_jax.activations.activation(x, kind=kind))
  assert changed.mean() >= 0.01
  assert np.count_nonzero(np.asarray(dp)) >= 0.01 * N
  assert np.all(np.asarray(dp)[~changed] == 0)


@pytest.mark.parametrize("kind", HARD_KINDS)
def test_literal_eq9_nanil_is_inert_at_the_papers_c(kind):
  # What the docstring's Note says of nanil_scale="paper": no output moves.
  x, p = _saturated_inputs(kind, jax.random.key(2))
  for c in (0.25, 0.5, 2.0):
    y = noisy_jax.noisy_activation(x, jax.random.key(3), p, c, mode="nanil", kind=kind,
                                   nanil_scale="paper")
    np.testing.assert_array_equal(y, noisy_jax.activations.activation(x, kind=kind))


B, T, D, H = 4, 5, 3, 6
NTM_SIZES = dict(memory_size=5, memory_width=4)


def _nanil(scale="reference"):
  """NANIL in both unit families, with the given ``nanil_scale``."""
  return dict(sigmoid=rnn.UnitNoise("hard_sigmoid", "nanil", nanil_scale=scale),
              tanh=rnn.UnitNoise("hard_tanh", "nanil", nanil_scale=scale))


def _nanil_fields(scale, deterministic=False):
  return dict(_nanil(scale), deterministic=deterministic)


_RNN_CLASSES = ("lstm_cell", "gru_cell", "lstm_layer", "gru_layer")
# Besides the LSTM and GRU cells and layers: only the heads' gates noisy, then only the
# feed-forward controller: each part of the NTM must receive nanil_scale on its own.
_NTM_VARIANTS = {"ntm_heads": dict(noisy_gates=("interpolation", "erase")),
                 "ntm_feedforward": dict(controller="feedforward", noisy_gates=("hidden",))}


def _linen_module(name):
  def build(**kw):
    if name in _NTM_VARIANTS:
      module = noisy_jax.nn.NTMCell(H, **NTM_SIZES, **_NTM_VARIANTS[name], **kw)
      return noisy_jax.nn.noisy_rnn(module)
    return _helpers.linen_sequence(name, _helpers.linen_module(name, H, **kw))
  return build


def _nnx_module(name):
  def build(rngs, **kw):
    if name in _NTM_VARIANTS:
      return nnx.RNN(noisy_jax.nnx.NTMCell(D, H, **NTM_SIZES, **_NTM_VARIANTS[name],
                                           rngs=rngs, **kw))
    return _helpers.nnx_sequence(name, _helpers.nnx_module(name, D, H, rngs=rngs, **kw))
  return build


LINEN_MODULES = {name: _linen_module(name) for name in (*_RNN_CLASSES, *_NTM_VARIANTS)}
NNX_MODULES = {name: _nnx_module(name) for name in (*_RNN_CLASSES, *_NTM_VARIANTS)}


def _inputs():
  return 3.0 * jax.random.normal(jax.random.key(10), (B, T, D))  # saturates many units


def _outputs(ys):
  return np.asarray(ys if not isinstance(ys, tuple) else ys[-1])


@pytest.mark.parametrize("name", sorted(LINEN_MODULES))
def test_linen_nanil_modules_inject_noise_and_take_nanil_scale(name):
  xs = _inputs()
  build = LINEN_MODULES[name]
  params = jax.jit(build(**_nanil_fields("reference", deterministic=True)).init)(
      jax.random.key(0), xs)
  run = lambda module: _outputs(
      jax.jit(module.apply)(params, xs, rngs={"noise": jax.random.key(1)}))
  plain = _outputs(
      jax.jit(build(**_nanil_fields("reference", deterministic=True)).apply)(params, xs))
  default = run(build(sigmoid=rnn.UnitNoise("hard_sigmoid", "nanil"),
                      tanh=rnn.UnitNoise("hard_tanh", "nanil")))
  literal = run(build(**_nanil_fields("paper")))
  assert np.abs(default - plain).max() > 1e-3  # the default injects noise
  assert np.abs(default - literal).max() > 1e-3  # the field reaches the units


@pytest.mark.parametrize("name", sorted(NNX_MODULES))
def test_nnx_nanil_modules_inject_noise_and_take_nanil_scale(name):
  xs = _inputs()
  build = NNX_MODULES[name]
  rngs = lambda: nnx.Rngs(params=0, noise=1)  # same parameters and noise for each build
  run = nnx.jit(lambda module, xs: module(xs))
  plain = _outputs(run(build(rngs(), **_nanil_fields("reference", deterministic=True)), xs))
  default = _outputs(run(build(rngs(), sigmoid=rnn.UnitNoise("hard_sigmoid", "nanil"),
                               tanh=rnn.UnitNoise("hard_tanh", "nanil")), xs))
  literal = _outputs(run(build(rngs(), **_nanil_fields("paper")), xs))
  assert np.abs(default - plain).max() > 1e-3
  assert np.abs(default - literal).max() > 1e-3


def test_nanil_layer_gives_p_a_gradient():
  # Enough steps and sequences that every gate group has units NANIL moves.
  xs = 3.0 * jax.random.normal(jax.random.key(11), (32, 8, D))
  layer = noisy_jax.nn.NoisyLSTM(H, **_nanil())
  params = layer.init(jax.random.key(0), xs, deterministic=True)["params"]

  def loss(params, scale):
    module = layer.clone(**_nanil(scale))
    ys = module.apply({"params": params}, xs, rngs={"noise": jax.random.key(1)})
    return jnp.sum(ys ** 2)

  grads = jax.jit(jax.grad(loss), static_argnums=1)(params, "reference")
  for name in ("p_gates", "p_candidate", "p_cell"):
    assert np.count_nonzero(np.asarray(grads[name])) > 0, name


def test_runner_config_reaches_the_model():
  from configs import unique_integers
  from experiments import input_pipeline, models

  config = unique_integers.get_config("nanil_annealed")
  assert config.noise.nanil_scale == "reference"
  config.train.batch_size = B
  config.model.hidden_size = config.model.mlp_size = H  # the plumbing, not the model size
  batch = input_pipeline.make_task(config).make_batch(jax.random.key(0), 0, None)
  outputs = {}
  for scale in ("reference", "paper"):
    config.noise.nanil_scale = scale
    model = models.build_model(config, 11)
    params = jax.jit(lambda key: model.init(key, batch, c=0.25, deterministic=True))(
        jax.random.key(1))
    apply = jax.jit(model.apply, static_argnames="deterministic")
    outputs[scale] = apply(params, batch, c=0.25, deterministic=False,
                           rngs={"noise": jax.random.key(2)})
    plain = apply(params, batch, c=0.25, deterministic=True)
  assert np.abs(outputs["reference"] - plain).max() > 1e-4
  assert np.abs(outputs["reference"] - outputs["paper"]).max() > 1e-4


def test_unknown_nanil_scale_is_named():
  sigmoid = rnn.UnitNoise("hard_sigmoid", "nanil", nanil_scale="eq9")
  with pytest.raises(ValueError, match=r"Unknown sigmoid\.nanil_scale='eq9'"):
    layer = noisy_jax.nn.NoisyLSTM(H, sigmoid=sigmoid, deterministic=True)
    jax.eval_shape(layer.init, jax.random.key(0), jnp.ones((B, T, D)))
  with pytest.raises(ValueError, match=r"Unknown tanh\.nanil_scale='eq9'"):
    noisy_jax.nnx.NoisyGRU(D, H, tanh=rnn.UnitNoise("hard_tanh", "nanil", nanil_scale="eq9"),
                           rngs=nnx.Rngs(0))
