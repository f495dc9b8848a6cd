"""Flax NNX Neural Turing Machine cell: a thin wrapper over :func:`noisy_jax._src.ntm.ntm_step`.

The parameters have the names and shapes of the Linen :class:`noisy_jax._src.ntm.NTMCell`
(the controller's under ``controller``), so both cells give the same numbers.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes
from flax.nnx.nn import initializers
from flax.typing import Dtype, Initializer

from noisy_jax._src import activations
from noisy_jax._src import nnx_recurrent
from noisy_jax._src import ntm
from noisy_jax._src import recurrent


class _ParamGroup(nnx.Module):
  """One ``nnx.Param`` per entry of ``shapes``, as attributes of the same names."""

  def __init__(self, shapes, inits, param_dtype, rngs: nnx.Rngs):
    self.names = tuple(shapes)
    for name, shape in shapes.items():
      setattr(self, name, nnx.Param(inits[name](rngs.params(), shape, param_dtype)))

  def values(self) -> dict[str, jax.Array]:
    return {name: getattr(self, name)[...] for name in self.names}


class NTMCell(nnx_recurrent._NoisyNNXBase, nnx.RNNCellBase):
  r"""Neural Turing Machine cell with noisy controller gates (NNX).

  The NNX twin of :class:`noisy_jax.nn.NTMCell`: one step of
  :func:`noisy_jax._src.ntm.ntm_step`, a noisy LSTM (or feed-forward) controller
  driving ``num_read_heads`` read and ``num_write_heads`` write heads over a
  ``memory_size x memory_width`` memory (Graves et al., 2014), with noisy
  hard-sigmoid gates and noisy hard-tanh units (Gulcehre et al., 2016, Sec. 6.6)
  and the initialisation of Collier and Beel (2018). A drop-in cell for
  ``nnx.RNN``: it keeps its own fork of the ``"noise"`` stream, whose counter
  ``nnx.RNN`` carries through the scan, so every step draws fresh noise. ``c`` and
  ``alpha`` are :class:`~noisy_jax.nnx.NoiseScale` state, annealable without
  retracing (:func:`noisy_jax.nnx.set_noise_scale` finds them).

  The carry is a :class:`noisy_jax.ntm.NTMState`; the output is the controller's
  output and the reads, ``(..., features + num_read_heads * memory_width)``.

  Args:
    in_features: input size ``D``.
    features: controller size ``H``.
    memory_size: ``N`` (default 128).
    memory_width: ``M`` (default 20).
    num_read_heads: ``R`` (default 1).
    num_write_heads: ``W`` (default 1).
    shift_range: ``S``; heads shift by ``-S..S`` (default 1).
    controller: ``"lstm"`` (default) or ``"feedforward"``.
    noisy_gates: names from :func:`noisy_jax.ntm.gate_names` that are noisy;
      ``None``: all.
    clip_value: clip of the controller's input, state and output and of the
      heads' parameters (default 20); ``None`` disables it.
    memory_init: the constant the memory starts at (default 1e-6).
    initial_state_init: initializer of the learned initial reads and of the
      logits of the initial weightings.
    sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale,
      tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale, deterministic,
      kernel_init, recurrent_kernel_init, bias_init, p_init, dtype, param_dtype, rng_collection, rngs: as
      :class:`noisy_jax.nnx.NoisyLSTMCell`; ``sigmoid_*`` also configure the
      heads' interpolation and erase gates.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> import noisy_jax.nnx
    >>> cell = noisy_jax.nnx.NTMCell(3, 16, memory_size=8, memory_width=4, rngs=nnx.Rngs(0))
    >>> nnx.RNN(cell)(jnp.ones((2, 5, 3))).shape
    (2, 5, 20)

  References:
    Graves et al., `Neural Turing Machines <https://arxiv.org/abs/1410.5401>`_, 2014.

    Gulcehre et al., `Noisy Activation Functions <https://arxiv.org/abs/1603.00391>`_, 2016.

    Collier and Beel, `Implementing Neural Turing Machines
    <https://arxiv.org/abs/1807.08518>`_, ICANN 2018.
  """

  def __init__(
      self,
      in_features: int,
      features: int,
      *,
      memory_size: int = 128,
      memory_width: int = 20,
      num_read_heads: int = 1,
      num_write_heads: int = 1,
      shift_range: int = 1,
      controller: str = "lstm",
      noisy_gates: Sequence[str] | None = None,
      clip_value: float | None = ntm.CLIP_VALUE,
      memory_init: float = ntm.MEMORY_INIT,
      initial_state_init: Initializer = initializers.normal(0.1),
      sigmoid_kind: str = recurrent.SIGMOID_GATE.kind,
      sigmoid_mode: str = recurrent.SIGMOID_GATE.mode,
      sigmoid_c: jax.typing.ArrayLike | None = None,
      sigmoid_alpha: jax.typing.ArrayLike | None = None,
      sigmoid_nanil_scale: str = recurrent.SIGMOID_GATE.nanil_scale,
      tanh_kind: str = recurrent.TANH_UNIT.kind,
      tanh_mode: str = recurrent.TANH_UNIT.mode,
      tanh_c: jax.typing.ArrayLike | None = None,
      tanh_alpha: jax.typing.ArrayLike | None = None,
      tanh_nanil_scale: str = recurrent.TANH_UNIT.nanil_scale,
      deterministic: bool = False,
      kernel_init: Initializer = initializers.lecun_normal(),
      recurrent_kernel_init: Initializer = initializers.orthogonal(),
      bias_init: Initializer = initializers.zeros_init(),
      p_init: Initializer = activations.p_init,
      dtype: Dtype | None = None,
      param_dtype: Dtype = jnp.float32,
      rng_collection: str = "noise",
      rngs: nnx.Rngs,
  ):
    shapes = ntm.weight_shapes(controller, in_features, features, memory_size, memory_width,
                               num_read_heads, num_write_heads, shift_range)
    valid_gates = ntm.gate_names(controller)
    self.noisy_gates = recurrent.check_noisy_gates(
        valid_gates if noisy_gates is None else noisy_gates, valid_gates)
    self.in_features = in_features
    self.features = features
    self.memory_size = memory_size
    self.memory_width = memory_width
    self.num_read_heads = num_read_heads
    self.num_write_heads = num_write_heads
    self.shift_range = shift_range
    self.controller_kind = controller
    self.clip_value = clip_value
    self.memory_init = memory_init
    self.deterministic = deterministic
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.rng_collection = rng_collection
    nnx_recurrent.init_noise_fields(
        self, sigmoid=(sigmoid_kind, sigmoid_mode, sigmoid_c, sigmoid_alpha, sigmoid_nanil_scale),
        tanh=(tanh_kind, tanh_mode, tanh_c, tanh_alpha, tanh_nanil_scale))
    inits = ntm.initializers_for(controller, kernel_init, recurrent_kernel_init, bias_init,
                                 p_init, initial_state_init)
    self.controller = _ParamGroup(shapes["controller"], inits["controller"], param_dtype,
                                  rngs)
    self._param_names = tuple(name for name in shapes if name != "controller")
    for name in self._param_names:
      setattr(self, name, nnx.Param(inits[name](rngs.params(), shapes[name], param_dtype)))
    self.rngs = nnx_recurrent._stream(rngs, rng_collection)

  def __call__(self, carry: ntm.NTMState, inputs: jax.Array, *,
               deterministic: bool | None = None,
               rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None):
    """One step.

    Args:
      carry: :class:`~noisy_jax.ntm.NTMState` from :meth:`initialize_carry`.
      inputs: ``(..., in_features)``.
      deterministic: overrides the attribute of the same name if given.
      rngs: a key, ``RngStream`` or ``Rngs`` for this step's noise instead of the
        stream stored at construction.

    Returns:
      ``(new_carry, output)``.
    """
    inputs = recurrent.check_step_input(inputs, self.in_features)
    deterministic = self.deterministic if deterministic is None else deterministic
    sigmoid, tanh = self._gates()
    key = self._key(deterministic or not self.noisy_gates, rngs)
    params = {"controller": self.controller.values(),
              **{name: getattr(self, name)[...] for name in self._param_names}}
    leaves, treedef = jax.tree.flatten(params)
    inputs, *leaves = nnx_dtypes.promote_dtype((inputs, *leaves), dtype=self.dtype)
    weights = ntm.assemble_weights(self.controller_kind, jax.tree.unflatten(treedef, leaves))
    return ntm.ntm_step(
        carry, inputs, weights, key, controller=self.controller_kind,
        shift_range=self.shift_range, sigmoid=sigmoid, tanh=tanh,
        noisy_gates=self.noisy_gates, clip_value=self.clip_value,
        deterministic=deterministic,
    )

  def initialize_carry(self, input_shape: tuple[int, ...],
                       rngs: nnx.Rngs | nnx.RngStream | None = None,
                       carry_init: Initializer | None = None) -> ntm.NTMState:
    """A fresh :class:`~noisy_jax.ntm.NTMState` for inputs of ``input_shape``.

    ``rngs`` and ``carry_init`` are unused: the initial memory is the constant
    ``memory_init`` and the learned initial reads and weightings are parameters,
    applied by the first step.
    """
    del rngs, carry_init
    return ntm.initial_state(
        tuple(input_shape[:-1]), controller=self.controller_kind, features=self.features,
        memory_size=self.memory_size, memory_width=self.memory_width,
        num_read_heads=self.num_read_heads, num_write_heads=self.num_write_heads,
        memory_init=self.memory_init, dtype=self.param_dtype,
    )

  @property
  def num_feature_axes(self) -> int:
    return 1
