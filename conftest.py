"""Test-session settings: key-reuse checks on, 8 simulated CPU devices."""

import os

# Must be set before jax initialises its backends; lets sharding tests see 8 devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_debug_key_reuse", True)
