"""Test-session settings: key-reuse checks on, 8 simulated CPU devices."""

import os

# Must be set before jax initialises its backends; lets sharding tests see 8 devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_debug_key_reuse", True)

import pytest  # noqa: E402

# Variants whose property a faster sibling in `make test` also checks; they run in
# `make test-slow`, so that `make test` stays under ten minutes on 2 cores.
_SLOW_VARIANTS = (
    # Eager float64 NTM against the reference: the noisy LSTM-controller run stays.
    "test_steps_match_the_float64_reference_(controller='lstm', deterministic=True)__without_jit",
    "test_steps_match_the_float64_reference_(controller='feedforward', deterministic=True)__without_jit",
    "test_steps_match_the_float64_reference_(controller='feedforward', deterministic=False)__without_jit",
    # check_grads of the hard-sigmoid kind (hard-tanh stays).
    "GradientTest::test_check_grads_away_from_kinks1",
    # The runner's NTM smoke run on copy (associative recall stays).
    "test_smoke_ntm_runs[copy]",
    # NANIL reaching the feed-forward NTM controller (the NTM heads' case stays).
    "test_linen_nanil_modules_inject_noise_and_take_nanil_scale[ntm_feedforward]",
    "test_nnx_nanil_modules_inject_noise_and_take_nanil_scale[ntm_feedforward]",
    "test_a_controller_is_a_table_entry",
    # NANIL reaching the LSTM and GRU cells: the layers stay, and a framework's cells and
    # layers read their units through the same adapter code (linen._units, nnx._prepare).
    "test_linen_nanil_modules_inject_noise_and_take_nanil_scale[lstm_cell]",
    "test_linen_nanil_modules_inject_noise_and_take_nanil_scale[gru_cell]",
    "test_nnx_nanil_modules_inject_noise_and_take_nanil_scale[lstm_cell]",
    "test_nnx_nanil_modules_inject_noise_and_take_nanil_scale[gru_cell]",
    # NNX NTM heads: the Linen heads' case checks the same core path (ntm_step), and the
    # NNX LSTM layer's case the NNX adapter's units.
    "test_nnx_nanil_modules_inject_noise_and_take_nanil_scale[ntm_heads]",
    # Linen's OptimizedLSTMCell has LSTMCell's parameter names (one convert.LAYOUTS row).
    "test_linen_converters_equal_outputs_and_round_trip[OptimizedLSTMCell]",
    # The NTM cell under noisy_rnn: the NTMCell doctest runs the same path, test_contract
    # checks its fresh noise per step.
    "test_ntm.py::test_linen_cell_under_nn_rnn",
    # Generator counts of the GRU and of the unbatched cell (LSTM and batched stay).
    "test_a_layers_training_step_draws_each_stream_at_most_twice[False-NoisyGRU]",
    "test_a_layers_training_step_draws_each_stream_at_most_twice[True-NoisyGRU]",
    "test_a_cells_training_step_draws_each_stream_once_per_pass[None]",
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  for item in items:
    if any(item.nodeid.endswith(name) for name in _SLOW_VARIANTS):
      item.add_marker(pytest.mark.slow)
