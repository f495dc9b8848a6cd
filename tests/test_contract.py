"""The contract every noisy recurrent module keeps, in both frameworks.

Run over each class {LSTM cell, GRU cell, LSTM layer, GRU layer, NTM cell} x
{Linen, NNX}, built by ``tests/_helpers.py``, each cell under its framework's RNN
(``noisy_jax.nn.noisy_rnn`` / ``nnx.RNN``):

(a) every step draws fresh noise (and, in NNX, every call);
(b) a missing noise stream raises a ``ValueError`` that names the fix, rather than
    running with the same noise at every step;
(c) ``deterministic=True`` needs no key and gives the same numbers call after call;
(d) a traced ``c`` does not retrace: one jitted function, two values of ``c``;
(e) Linen and NNX agree to the bit for the same parameters and step keys;

and the deprecated flat noise fields still work, with a warning, in each adapter.

The numbers of every module are pinned bit for bit by ``tests/test_golden.py``.
Properties (a) to (d) share one module-scoped ``harness`` per class and framework
(:class:`_Linen`, :class:`_NNX`) and one jitted function in it, so pytest runs a
harness's tests one after the other (and xdist mostly on one worker): one compile each.
"""

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import noisy_jax.nn
import noisy_jax.nnx
from noisy_jax import rnn
from tests import _helpers

B, T, D, H = 2, 3, 3, 4
UnitNoise = rnn.UnitNoise
COMBOS = [pytest.param((cls, framework), id=f"{cls}-{framework}")
          for cls in _helpers.CLASSES for framework in _helpers.FRAMEWORKS]
# Large enough that every step's noise moves every noisy unit visibly.
C_FRESH = 5.0


def _units(c):
  return dict(sigmoid=UnitNoise("hard_sigmoid", "nah", c=c),
              tanh=UnitNoise("hard_tanh", "nan", c=c))


def _xs():
  return jnp.zeros((B, T, D))  # a constant input: only the noise changes between steps


def _memoryless_params(cls):
  """Parameters and noisy gates of :func:`_helpers.memoryless` for ``cls``."""
  shapes = _helpers.shapes_of(cls, D, H)
  return _helpers.memoryless(cls, _helpers.random_params(shapes, seed=0))


class _Linen:
  """One jitted ``(c, keys) -> (noisy outputs, deterministic outputs)`` of a Linen module.

  The module is built inside the jitted function with a traced ``c``, as the
  documented annealing pattern does; the deterministic twin is given a noise
  stream too, which it must ignore.
  """

  def __init__(self, cls):
    self.cls = cls
    self.params, self.noisy_gates = _memoryless_params(cls)
    self.traces = 0
    self.run = jax.jit(self._run, compiler_options=_helpers.FAST)

  def sequence(self, c=C_FRESH, **fields):
    module = _helpers.linen_module(self.cls, H, noisy_gates=self.noisy_gates, **_units(c),
                                   **fields)
    return _helpers.linen_sequence(self.cls, module)

  def variables(self):
    return _helpers.linen_variables(self.cls, self.params)

  def _run(self, variables, xs, c, noise_key, quiet_key):
    self.traces += 1
    noisy = self.sequence(c).apply(variables, xs, rngs={"noise": noise_key})
    quiet = self.sequence(c, deterministic=True).apply(variables, xs,
                                                       rngs={"noise": quiet_key})
    return noisy, quiet

  def call(self, c=C_FRESH, seed=0):
    """``(noisy, quiet)`` outputs for noise keys drawn from ``seed``."""
    keys = jax.random.split(jax.random.key(seed))
    noisy, quiet = self.run(self.variables(), _xs(), jnp.float32(c), keys[0], keys[1])
    return np.asarray(noisy), np.asarray(quiet)

  def trace_without_key(self):
    """Traces the deterministic module with no noise stream at all (raises if needed)."""
    quiet = self.sequence(deterministic=True)
    jax.eval_shape(lambda v, xs: quiet.apply(v, xs), self.variables(), _xs())
    if not _helpers.is_layer(self.cls):  # a plain nn.RNN, which drops the stream, too
      plain = nn.RNN(quiet.cell)
      jax.eval_shape(lambda v, xs: plain.apply(v, xs), self.variables(), _xs())


class _NNX:
  """One ``nnx.jit`` function ``(model, quiet) -> (noisy outputs, deterministic outputs)``.

  ``model`` draws from its own noise stream; ``quiet`` is its ``deterministic=True``
  twin, which has a stream too and must ignore it. ``c`` is the models' state.
  """

  def __init__(self, cls):
    self.cls = cls
    self.params, self.noisy_gates = _memoryless_params(cls)
    self.model = self.sequence(rngs=nnx.Rngs(params=0, noise=1))
    self.quiet = self.sequence(rngs=nnx.Rngs(params=0, noise=2), deterministic=True)
    self.traces = 0
    self.run = nnx.jit(self._run)

  def sequence(self, *, rngs, c=C_FRESH, **options):
    module = _helpers.nnx_module(self.cls, D, H, rngs=rngs, zero_init=True,
                                 noisy_gates=self.noisy_gates, **_units(c), **options)
    return _helpers.nnx_sequence(self.cls, _helpers.load_params(module, self.params))

  def _run(self, model, quiet, xs):
    self.traces += 1
    return model(xs), quiet(xs)

  def call(self, model=None):
    """``(noisy, quiet)`` outputs; each call advances both streams."""
    noisy, quiet = self.run(self.model if model is None else model, self.quiet, _xs())
    return np.asarray(noisy), np.asarray(quiet)

  def trace_without_key(self):
    """Traces a deterministic twin built with no noise stream (raises if one is needed)."""
    graphdef, state = nnx.split(self.sequence(rngs=nnx.Rngs(params=0), deterministic=True))
    jax.eval_shape(lambda state, xs: nnx.merge(graphdef, state)(xs), state, _xs())


@pytest.fixture(scope="module", params=COMBOS)
def harness(request):
  cls, framework = request.param
  return (_Linen if framework == "linen" else _NNX)(cls)


def _hidden(ys):
  """The first H output columns: an NTM's controller output, the others' whole output."""
  return ys[..., :H]


def _assert_every_step_differs(ys, other=None):
  """Each unit of each sequence takes T different values over time (or differs from
  ``other`` at every step)."""
  ys = _hidden(ys)
  if other is not None:
    assert np.all(ys != _hidden(other)), (ys, other)
    return
  steps = np.sort(ys, axis=1)
  assert np.all(np.diff(steps, axis=1) != 0), ys


# (a) Fresh noise at every step.


def test_fresh_noise_at_every_step(harness):
  # Under these parameters each step's output is a function of that step's noise
  # alone (the expectation is one value at every step), so the same noise at every
  # step would repeat one output; fresh noise gives T different ones.
  noisy, quiet = harness.call()
  np.testing.assert_array_equal(_hidden(quiet), np.broadcast_to(_hidden(quiet)[:, :1],
                                                                _hidden(quiet).shape))
  _assert_every_step_differs(noisy)
  if isinstance(harness, _NNX):  # the stream moves on: the next call draws new noise too
    again, _ = harness.call()
    _assert_every_step_differs(again)
    _assert_every_step_differs(again, other=noisy)


# (b) A missing noise stream is an error that names the fix.


def test_missing_noise_stream_raises_and_names_the_fix(harness):
  xs, cls = _xs(), harness.cls
  if isinstance(harness, _Linen):
    module, variables = harness.sequence(), harness.variables()
    name = type(module if _helpers.is_layer(cls) else module.cell).__name__
    with pytest.raises(ValueError, match=rf"^{name} at /\S* needs the 'noise' RNG stream "
                       r".*Fix: pass rngs=\{'noise': key\}"):
      jax.eval_shape(lambda v, xs: module.apply(v, xs), variables, xs)
    if not _helpers.is_layer(cls):  # a plain nn.RNN drops the stream it is given
      plain = nn.RNN(module.cell)
      with pytest.raises(ValueError, match=re.escape(
          "add 'noise': True to the split_rngs already there, keeping your own entries")):
        jax.eval_shape(lambda v, xs, key: plain.apply(v, xs, rngs={"noise": key}), variables,
                       xs, jax.random.key(0))
  else:
    module = _helpers.nnx_sequence(
        cls, _helpers.nnx_module(cls, D, H, rngs=nnx.Rngs(params=0), zero_init=True))
    name = _helpers.NNX[cls].__name__
    graphdef, state = nnx.split(module)
    with pytest.raises(ValueError, match=rf"^{name} has no 'noise' RNG stream and "
                       r"deterministic=False\. Fix: construct it with rngs=nnx\.Rngs\("):
      jax.eval_shape(lambda state, xs: nnx.merge(graphdef, state)(xs), state, xs)


# (c) deterministic=True needs no key and is reproducible.


def test_deterministic_needs_no_key_and_is_reproducible(harness):
  harness.trace_without_key()
  # Other noise keys (Linen) or advanced streams (NNX): the same numbers.
  if isinstance(harness, _Linen):
    (noisy, first), (again, second) = harness.call(seed=1), harness.call(seed=2)
  else:
    (noisy, first), (again, second) = harness.call(), harness.call()
  assert not np.array_equal(noisy, again)  # the noise did change
  np.testing.assert_array_equal(first, second)


# (d) A traced c does not retrace.


def test_new_c_does_not_retrace(harness):
  if isinstance(harness, _Linen):  # c is an argument of the jitted function
    low, _ = harness.call(c=0.5, seed=3)
    traces = harness.traces
    high, _ = harness.call(c=C_FRESH, seed=3)  # the same noise, another c
  else:  # c is state: annealed in place (set_noise_scale), as in training
    same_stream = nnx.clone(harness.model)
    high, _ = harness.call()
    traces = harness.traces
    noisy_jax.nnx.set_noise_scale(same_stream, 0.5)
    low, _ = harness.call(same_stream)
  assert traces >= 1 and harness.traces == traces, "a new value of c retraced"
  assert not np.allclose(low, high, atol=1e-3)  # c reached the noisy units


# (e) Linen and NNX agree to the bit.

# Settings off every default, so that each must reach the maths through both adapters.
_AGREE = dict(sigmoid=UnitNoise("hard_sigmoid", "nanil", c=0.6, alpha=1.05),
              tanh=UnitNoise("hard_tanh", "nah", c=0.8, alpha=0.95))
# Some gates of each kind quiet: noisy_gates must reach the maths too.
_AGREE_GATES = {"lstm": ("input", "forget", "candidate", "cell"),
                "gru": ("reset", "candidate"), "ntm": ("forget", "candidate", "erase")}


@pytest.mark.parametrize("cls", _helpers.CLASSES)
def test_linen_and_nnx_agree_to_the_bit(cls):
  fields = dict(_AGREE, noisy_gates=_AGREE_GATES[_helpers.KIND[cls]])
  call = {}
  if _helpers.is_layer(cls):
    fields.update(reverse=True, return_carry=True)
    call = dict(seq_lengths=jnp.array([T, 2]))
  params = _helpers.random_params(_helpers.shapes_of(cls, D, H), seed=5, scale=3.0)
  # NNX without a noise stream: the explicit keys are all there is to draw from.
  model = _helpers.load_params(
      _helpers.nnx_module(cls, D, H, rngs=nnx.Rngs(params=0), zero_init=True, **fields),
      params)
  linen = _helpers.linen_module(cls, H, **fields)
  graphdef, state = nnx.split(model)

  # Default compiler options: at XLA:CPU's optimization level 0 the two adapters'
  # graphs (the same operations, in another order) can round differently.
  @jax.jit
  def both(params, state, xs, key):
    keys = jax.random.split(key, T)
    return (_helpers.linen_with_keys(cls, linen, params, xs, keys, **call),
            _helpers.nnx_with_keys(cls, nnx.merge(graphdef, state), xs,
                                   jax.random.clone(keys), **call))

  from_linen, from_nnx = both(params, state, _helpers.inputs((B, T, D), scale=2.0),
                              jax.random.key(6))
  jax.tree.map(np.testing.assert_array_equal, from_nnx, from_linen)


# The deprecated flat fields (sigmoid_c=, tanh_mode=, ...): one release more, with a warning.

_FLAT = dict(sigmoid_c=0.7, tanh_mode="nanis", tanh_alpha=0.9)
_NESTED = dict(sigmoid=UnitNoise("hard_sigmoid", "nah", c=0.7),
               tanh=UnitNoise("hard_tanh", "nanis", alpha=0.9))
_FLAT_WARNING = (r"NoisyGRUCell\(sigmoid_c=, tanh_mode=, tanh_alpha=\) is deprecated .*"
                 r"Fix: pass sigmoid=noisy_jax\.UnitNoise")


def _gru_step_problem():
  params = _helpers.rnn_params("gru", D, H, seed=7, scale=3.0)
  return params, _helpers.inputs((B, H), seed=8), _helpers.inputs((B, D), seed=9, scale=2.0)


def test_linen_flat_noise_fields_warn_and_give_the_same_numbers():
  params, carry, x = _gru_step_problem()
  old = noisy_jax.nn.NoisyGRUCell(H, **_FLAT)
  new = noisy_jax.nn.NoisyGRUCell(H, **_NESTED)

  @functools.partial(jax.jit, compiler_options=_helpers.FAST)
  def both(params, carry, x, key):
    variables = {"params": params}
    return (old.apply(variables, carry, x, rng=key),
            new.apply(variables, carry, x, rng=jax.random.clone(key)))

  with pytest.warns(DeprecationWarning, match=_FLAT_WARNING):
    from_old, from_new = both(params, carry, x, jax.random.key(10))
  jax.tree.map(np.testing.assert_array_equal, from_old, from_new)


def test_nnx_flat_noise_arguments_warn_and_give_the_same_numbers():
  params, carry, x = _gru_step_problem()
  build = lambda **options: _helpers.load_params(noisy_jax.nnx.NoisyGRUCell(
      D, H, rngs=nnx.Rngs(0), **_helpers.ZERO_INIT, **options), params)
  with pytest.warns(DeprecationWarning, match=_FLAT_WARNING):
    old = build(**_FLAT)
  new = build(**_NESTED)
  for unit in ("sigmoid", "tanh"):
    old_unit, new_unit = getattr(old, unit), getattr(new, unit)
    assert old_unit._replace(c=None, alpha=None) == new_unit._replace(c=None, alpha=None)
    assert float(old_unit.c[...]) == float(new_unit.c[...])
    assert float(old_unit.alpha[...]) == float(new_unit.alpha[...])
  from_old, from_new = nnx.jit(lambda old, new, key: (
      old(carry, x, rngs=key), new(carry, x, rngs=jax.random.clone(key))))(
          old, new, jax.random.key(10))
  jax.tree.map(np.testing.assert_array_equal, from_old, from_new)
  # The NTM cell's controller size had another name.
  with pytest.warns(DeprecationWarning, match=r"NTMCell\(features=\.\.\.\) is deprecated"):
    ntm = noisy_jax.nnx.NTMCell(D, features=H, rngs=nnx.Rngs(0), **_helpers.NTM_SIZES,
                                **_helpers.ZERO_INIT)
  assert ntm.hidden_features == H
  assert jax.tree.map(jnp.shape, _helpers.nnx_params(ntm)) == _helpers.shapes_of(
      "ntm_cell", D, H)
