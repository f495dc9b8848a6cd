"""Noise generation for the noisy units.

Every noisy unit draws its noise through :func:`standard_normal`, so the noise is a
pure function of the key and the element index: the backward pass can regenerate it
instead of storing it.
"""

import jax
import jax.numpy as jnp


def as_typed_key(key: jax.Array, argname: str = "key") -> jax.Array:
  """Returns ``key`` as a typed PRNG key; raw ``uint32[2]`` keys are wrapped."""
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


def standard_normal(key: jax.Array, shape, dtype) -> jax.Array:
  """Draws iid N(0, 1) noise of ``shape`` in ``dtype`` from a typed ``key``."""
  return jax.random.normal(key, shape, dtype)
