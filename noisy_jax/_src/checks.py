"""Every argument check of the package, written once.

Each check raises a ``ValueError`` or ``TypeError`` whose message names the argument,
the value it got and the fix, and returns the value in the form the caller needs
(e.g. a typed key, a ``jax.Array``). Values that are traced (inside ``jit``) are
checked only for what is visible at trace time: shape and dtype, not their value.
The valid values of the enumerated options live here too, so that a check and the
list it checks against cannot drift apart.
"""

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("hard_tanh", "hard_sigmoid", "tanh", "sigmoid")
SIGMOID_KINDS = ("hard_sigmoid", "sigmoid")
TANH_KINDS = ("hard_tanh", "tanh")
MODES = ("nan", "nah", "nani", "nanil", "nanis")
# How NANIL learns its input-noise scale (see noisy_activation's Note).
NANIL_SCALES = ("reference", "paper")


def choice(value: Any, argname: str, choices: Sequence[Any]) -> Any:
  """``value`` if it is one of ``choices``."""
  if value not in choices:
    raise ValueError(
        f"Unknown {argname}={value!r}. Valid values: {', '.join(map(repr, choices))}."
    )
  return value


def float_array(x: jax.typing.ArrayLike, argname: str = "x") -> jax.Array:
  """``x`` as a floating-point ``jax.Array`` (integers are refused, not cast)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"{argname} must be a floating-point array, got dtype {x.dtype}. Fix: cast "
        f"it first, e.g. {argname}.astype(jnp.float32)."
    )
  return x


def concrete(value: jax.typing.ArrayLike) -> np.ndarray | None:
  """``value`` as a NumPy array, or None if it is traced."""
  try:
    return np.asarray(value)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def broadcastable(value: jax.typing.ArrayLike, argname: str,
                  shape: tuple[int, ...]) -> jax.Array:
  """``value`` as an array whose shape broadcasts to ``shape``."""
  if callable(value):
    raise TypeError(
        f"{argname} must be a number or an array, got the callable {value!r} (a "
        f"schedule?). Fix: pass the schedule's value at this step, e.g. "
        f"{argname}=noisy_jax.schedules.noise_annealing()(step)."
    )
  value = jnp.asarray(value)
  try:
    ok = np.broadcast_shapes(value.shape, shape) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"{argname} of shape {value.shape} does not broadcast to x of shape "
        f"{tuple(shape)}. Fix: pass a scalar or an array whose shape broadcasts "
        f"to x, e.g. one value per unit of shape {tuple(shape)[-1:]}."
    )
  return value


def noise_scale(c: jax.typing.ArrayLike, shape: tuple[int, ...],
                argname: str = "c") -> jax.Array:
  """The paper's ``c``: broadcastable to ``shape``, finite and >= 0 where concrete.

  Concreteness is judged on ``c`` as given: under a trace, even a Python float turns
  into a tracer once converted to an array.
  """
  value = None if callable(c) else concrete(c)
  c = broadcastable(c, argname, shape)
  if value is not None and not (np.all(np.isfinite(value)) and np.all(value >= 0)):
    raise ValueError(
        f"{argname} must be finite and >= 0 (it scales the noise's standard deviation), "
        f"got {argname}={value}. Fix: pass a non-negative {argname}, e.g. the paper's "
        f"annealed value at this step, noisy_jax.schedules.noise_annealing()(step)."
    )
  return c


def alpha(value: jax.typing.ArrayLike, shape: tuple[int, ...],
          argname: str = "alpha") -> jax.Array:
  """The paper's ``alpha``: broadcastable to ``shape``, finite where concrete (as given)."""
  array = broadcastable(value, argname, shape)
  at_least(value, argname, -np.inf, f"pass a finite {argname}, e.g. the reference default "
           "(None).")
  return array


def at_least(value: jax.Array, argname: str, bound: float, fix: str) -> None:
  """Checks that a concrete ``value`` is finite and >= ``bound`` (may be -inf) everywhere."""
  known = concrete(value)
  if known is not None and not (np.all(np.isfinite(known)) and np.all(known >= bound)):
    bound_text = "" if bound == -np.inf else f" and >= {bound}"
    raise ValueError(
        f"{argname} must be finite{bound_text}, got {argname}={known}. Fix: {fix}")


def positive(value: Any, argname: str, allow_zero: bool = False) -> float:
  """A concrete finite scalar ``> 0`` (``>= 0`` with ``allow_zero``), as a float."""
  value = float(value)
  if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{argname} must be finite and {bound}, got {argname}={value}. "
                     f"Fix: pass a finite {argname} {bound}.")
  return value


def python_int(value: Any, argname: str, low: int, high: int | None = None) -> int:
  """A Python (or NumPy) integer in ``[low, high]``, as an int."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{argname} must be a Python int, got {argname}={value!r}. Fix: pass "
                    f"an int, e.g. {argname}={max(low, 1)}.")
  value = int(value)
  if value < low or (high is not None and value > high):
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{argname} must be {bound}, got {argname}={value}. Fix: pass "
                     f"{argname} {bound}.")
  return value


def ordered(low_name: str, low: int, high_name: str, high: int) -> None:
  """Checks ``low <= high`` for two arguments that bound a range."""
  if low > high:
    raise ValueError(
        f"{low_name}={low} is larger than {high_name}={high}. Fix: pass "
        f"{low_name} <= {high_name}."
    )


def traced_bound(value: Any, default: int, argname: str, low: int, high: int) -> jax.Array:
  """An int32 bound in ``[low, high]`` that may be traced (a curriculum's value).

  ``None`` gives ``default``; a concrete value outside the range is refused; a traced
  one is clipped into it.
  """
  if value is None:
    return jnp.asarray(default, jnp.int32)
  known = concrete(value)
  if known is not None and (known.shape or not low <= int(known) <= high):
    raise ValueError(
        f"{argname} must be a scalar in [{low}, {high}], got {argname}={value!r}. "
        f"Fix: keep it between the minimum and the static maximum of the task."
    )
  return jnp.clip(jnp.asarray(value, jnp.int32), low, high)


def typed_key(key: jax.Array, argname: str = "key") -> jax.Array:
  """``key`` as a typed PRNG key; raw ``uint32[..., 2]`` keys are wrapped."""
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
    return jax.random.wrap_key_data(key)
  raise TypeError(
      f"{argname} must be a PRNG key from jax.random.key(seed) (or a legacy "
      f"jax.random.PRNGKey), got an array of dtype {key.dtype} and shape "
      f"{key.shape}. Fix: pass {argname}=jax.random.key(0) or a key split from it."
  )


def noise_key(key: jax.Array | None, deterministic: bool, what: str) -> jax.Array | None:
  """The typed key ``what`` draws its noise from; None when ``deterministic``."""
  if deterministic:
    return None
  if key is None:
    raise ValueError(
        f"key is required when deterministic=False: {what} needs a PRNG key. "
        "Fix: pass key=jax.random.key(seed) (fresh for every call), or "
        "deterministic=True for the test-time expectation."
    )
  return typed_key(key)


def gate_names(noisy_gates: Sequence[str], valid: tuple[str, ...]) -> tuple[str, ...]:
  """``noisy_gates`` (names from ``valid``) as a tuple."""
  if isinstance(noisy_gates, str):
    raise TypeError(
        f"noisy_gates must be a sequence of gate names, got the string {noisy_gates!r}. "
        f"Fix: pass a tuple, e.g. noisy_gates=({noisy_gates!r},)."
    )
  for name in noisy_gates:
    choice(name, "noisy_gates entry", valid)
  return tuple(noisy_gates)


def unit_noise(noise: Any, prefix: str) -> Any:
  """A ``UnitNoise`` of the ``"sigmoid"`` or ``"tanh"`` units, named ``prefix`` in errors."""
  if not (isinstance(noise, tuple) and hasattr(noise, "_fields")
          and noise._fields[:2] == ("kind", "mode")):
    raise TypeError(
        f"{prefix} must be a noisy_jax.UnitNoise, got {type(noise).__name__}. Fix: pass "
        f"e.g. {prefix}=noisy_jax.UnitNoise({('hard_' + prefix)!r}, 'nan')."
    )
  choice(noise.kind, f"{prefix}.kind", SIGMOID_KINDS if prefix == "sigmoid" else TANH_KINDS)
  choice(noise.mode, f"{prefix}.mode", MODES)
  choice(noise.nanil_scale, f"{prefix}.nanil_scale", NANIL_SCALES)
  return noise


def sizes(**values: int) -> None:
  """Checks integer sizes: ``shift_range >= 0``, every other size ``>= 1``."""
  for name, value in values.items():
    minimum = 0 if name == "shift_range" else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
      raise ValueError(
          f"{name} must be an integer >= {minimum}, got {name}={value!r}. "
          f"Fix: pass e.g. {name}={max(minimum, 1)}."
      )


def sequence_input(inputs: jax.typing.ArrayLike, in_features: int | None) -> jax.Array:
  """A ``(batch, time, features)`` input; ``in_features=None`` skips the size."""
  inputs = float_array(inputs, "inputs")
  if inputs.ndim != 3:
    raise ValueError(
        f"inputs must have rank 3, (batch, time, features) (or (time, batch, features) "
        f"with time_major=True), got shape {inputs.shape}. Fix: add a batch axis, e.g. "
        "inputs[None], or use the cell under nn.RNN for more batch axes."
    )
  _features(inputs, in_features, "layer")
  return inputs


def step_input(inputs: jax.typing.ArrayLike, in_features: int | None) -> jax.Array:
  """A cell's ``(..., features)`` input; ``in_features=None`` skips the size."""
  inputs = float_array(inputs, "inputs")
  if inputs.ndim < 1:
    raise ValueError(
        f"inputs of a cell must have shape (..., features), got a scalar of shape "
        f"{inputs.shape}. Fix: pass at least one feature axis, e.g. inputs[None]."
    )
  _features(inputs, in_features, "cell")
  return inputs


def _features(inputs: jax.Array, in_features: int | None, what: str) -> None:
  if in_features is not None and inputs.shape[-1] != in_features:
    raise ValueError(
        f"inputs have {inputs.shape[-1]} features but the {what}'s input_kernel expects "
        f"{in_features}. Fix: feed inputs of shape (..., {in_features}) or re-initialise "
        f"the {what} for the new size."
    )


def carry(value: Any, parts: tuple[str, ...], hidden: int, cell: str,
          argname: str = "carry") -> Any:
  """A recurrent carry of ``parts`` (one array, or a tuple), each ``(..., hidden)``."""
  if len(parts) > 1 and not (isinstance(value, (tuple, list)) and len(value) == len(parts)):
    raise ValueError(
        f"{argname} of a noisy {cell} must be the tuple ({', '.join(parts)}), got "
        f"{type(value).__name__}. Fix: build it with the cell's initialize_carry."
    )
  values = tuple(value) if len(parts) > 1 else (value,)
  for index, (part, name) in enumerate(zip(values, parts)):
    if jnp.shape(part)[-1:] != (hidden,):
      where = f"{argname}[{index}] ({name})" if len(parts) > 1 else argname
      width = jnp.shape(part)[-1] if jnp.ndim(part) else None
      raise ValueError(
          f"{where} of a noisy {cell} has shape {jnp.shape(part)}; its last axis must be "
          f"the hidden size {hidden} of the parameters (features={hidden} of a Linen "
          f"module, hidden_features={hidden} of an NNX one). Fix: either make the carry "
          f"{hidden} wide (initialize_carry does), or build the module with "
          f"features={width} (NNX: hidden_features={width}) and re-initialise it."
      )
  return values if len(parts) > 1 else value


def seq_lengths(lengths: jax.typing.ArrayLike, batch: int) -> jax.Array:
  """``(batch,)`` integer sequence lengths."""
  lengths = jnp.asarray(lengths)
  if lengths.shape != (batch,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise ValueError(
        f"seq_lengths must be an integer array of shape (batch,) = ({batch},), got "
        f"dtype {lengths.dtype} and shape {lengths.shape}. Fix: one int length "
        "per sequence, e.g. jnp.array([5, 3], jnp.int32)."
    )
  return lengths


def renamed_arguments(**new_names: str) -> Callable[[Callable], Callable]:
  """Keeps old keyword names of a function working, with a ``DeprecationWarning``.

  ``@renamed_arguments(weights="weighting")`` lets callers still write
  ``weights=...`` for one release.
  """

  def decorator(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      for old, new in new_names.items():
        if old in kwargs:
          if new in kwargs:
            raise TypeError(f"{fn.__name__} got both {old}= and its new name {new}=. "
                            f"Fix: pass only {new}=.")
          warnings.warn(f"{fn.__name__}({old}=...) is deprecated; use {new}=.",
                        DeprecationWarning, stacklevel=2)
          kwargs[new] = kwargs.pop(old)
      return fn(*args, **kwargs)

    return wrapper

  return decorator


# The generators of the noise (noise.standard_normal's noise_impl).
NOISE_IMPLS = ("hash", "jax")


def float_dtype(dtype: Any, argname: str = "dtype") -> np.dtype:
  """``dtype`` as a floating-point NumPy dtype (integer dtypes are refused)."""
  dtype = jnp.dtype(dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
        f"{argname} must be a floating-point dtype, got {argname}={dtype}. Fix: pass "
        f"e.g. {argname}=jnp.float32."
    )
  return dtype


def single_key(key: jax.Array, argname: str = "key") -> jax.Array:
  """``key`` as one typed PRNG key (shape ``()``), not a batch of keys."""
  key = typed_key(key, argname)
  if key.shape:
    raise ValueError(
        f"{argname} must be a single PRNG key, got a batch of shape {key.shape}. Fix: "
        f"pass one key, e.g. jax.random.split({argname})[0], or jax.vmap over the keys."
    )
  return key


def seed_or_key(key: Any, what: str) -> jax.Array:
  """A required single PRNG key for ``what``; an int (or int32 scalar) is a seed."""
  if key is None:
    raise ValueError(
        f"key is required: {what} has no default seed, so that two of them never share "
        "their noise by accident. Fix: pass key=jax.random.key(seed) or an int seed, "
        "e.g. key=0."
    )
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key(key)
  if not isinstance(key, (jax.Array, np.ndarray)):
    raise TypeError(
        f"key must be a PRNG key or an int seed, got key={key!r}. Fix: pass "
        "key=jax.random.key(seed) or an int seed."
    )
  if jnp.issubdtype(key.dtype, jnp.integer) and not jnp.shape(key):
    # optax.inject_hyperparams turns an int seed into an int32 scalar array.
    return jax.random.key(key)
  return single_key(key)


def scalar_hyperparameter(value: Any, argname: str, example: str) -> Any:
  """A scalar hyperparameter: finite and >= 0 where concrete (it may be traced).

  ``example`` is the value the fix suggests, e.g. the paper's ``"0.55"``.
  """
  if callable(value) or isinstance(value, (str, bool)) or jnp.ndim(value) != 0:
    raise TypeError(
        f"{argname} must be a non-negative scalar, got {argname}={value!r}. Fix: "
        f"pass a float such as the paper's {argname}={example}."
    )
  known = concrete(value)  # None while traced (inside inject_hyperparams + jit)
  if known is not None:
    positive(known, argname, allow_zero=True)
  return value


def int_range(low_name: str, low: Any, high_name: str, high: Any,
              minimum: int) -> tuple[int, int]:
  """Two Python ints ``minimum <= low <= high`` that bound a range, as ints."""
  low = python_int(low, low_name, minimum)
  high = python_int(high, high_name, minimum)
  ordered(low_name, low, high_name, high)
  return low, high


def memory(value: jax.typing.ArrayLike, argname: str = "memory") -> jax.Array:
  """An NTM memory ``(..., N, M)`` (N locations of width M) as a floating-point array."""
  value = float_array(value, argname)
  if value.ndim < 2:
    raise ValueError(
        f"{argname} must have shape (..., N, M) (N locations of width M), got shape "
        f"{value.shape}. Fix: add the missing axis, e.g. {argname}[None] for one location."
    )
  return value


def last_axis(value: jax.Array, argname: str, size: int, what: str) -> jax.Array:
  """``value`` if its last axis has ``size`` entries (``what`` they are, for the message)."""
  if value.ndim < 1 or value.shape[-1] != size:
    raise ValueError(
        f"{argname} must have a last axis of size {size} ({what}), got shape "
        f"{value.shape}. Fix: pass {argname} of shape (..., {size})."
    )
  return value


def heads_axis(value: jax.Array, argname: str, shape: str, fix: str) -> jax.Array:
  """``value`` if it has a heads axis before its last; ``shape`` reads e.g. ``(..., H, M)``."""
  if value.ndim < 2:
    raise ValueError(
        f"{argname} must have shape {shape}, with a heads axis before the last, got shape "
        f"{value.shape}. Fix: {fix}"
    )
  return value


def odd_last_axis(value: jax.Array, argname: str, what: str, fix: str) -> jax.Array:
  """``value`` if its last axis has an odd size (``what`` it holds, for the message)."""
  if value.ndim < 1 or value.shape[-1] % 2 != 1:
    raise ValueError(
        f"{argname} must have an odd last axis ({what}), got shape {value.shape}. Fix: {fix}"
    )
  return value
