"""Fields every experiment config shares; each experiment file fills task, model and paper.

Every ``get_config`` returns ``locked(config)``: the ConfigDict then refuses an unknown
(e.g. misspelt) field and a value of another type when it is assigned, in Python and
from the command line. experiments/validation.py checks the rest of every field named
here (its allowed values, finiteness, and the rules between fields) before anything
is compiled.
"""

import ml_collections
from ml_collections import config_dict


def base_config(name: str, variant: str) -> ml_collections.ConfigDict:
  """The shared sections with their defaults; the experiment file overrides them."""
  config = ml_collections.ConfigDict()
  config.name = name  # The experiment (config file) name; reports group runs by it.
  config.variant = variant  # The row of the paper's table this run reproduces.
  config.seed = 0  # Root seed: parameters, data and noise of every run derive from it.
  # Independent runs trained at once by jax.vmap in one jitted step; run i draws
  # its keys from fold_in(key(seed), i), so it does not depend on num_seeds.
  config.num_seeds = 4
  config.num_devices = 0  # Data-parallel devices over the batch axis; 0 = all devices.
  # True: every run sees the same batches (compares inits/noise on equal data);
  # False: each run draws its own data stream (independent restarts, as the papers).
  config.shared_data = False

  # Noise in the model's saturating units (Paper A); mode "none" = plain units.
  config.noise = ml_collections.ConfigDict()
  config.noise.mode = "none"  # "none", "nan", "nah", "nani", "nanil" or "nanis" (Paper A Sec. 6).
  # How NANIL learns its noise scale: "reference" (the reference code's form, which
  # produced the paper's NANIL numbers) or "paper" (Eq. 9 read literally: inert at
  # these values of c; see noisy_jax.noisy_activation). Only for mode "nanil".
  config.noise.nanil_scale = "reference"
  # Fixed c when not annealed; None = the reference code's default for the unit.
  config.noise.c = config_dict.placeholder(float)
  config.noise.alpha = config_dict.placeholder(float)  # Paper A's alpha; None = reference default.
  config.noise.anneal = False  # Anneal c as c0 / sqrt(floor(step / every) + 1) (Paper A Sec. 6.6).
  config.noise.c0 = 30.0  # Annealing start (Paper A: 30).
  config.noise.c_final = 0.5  # Annealing floor (Paper A: "annealed it down to 0.5").
  config.noise.anneal_every = 200  # Updates per increment of the paper's t (Paper A: 200).

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # "sgd", "adam" or "rmsprop".
  config.optimizer.learning_rate = 1e-3  # Constant learning rate.
  config.optimizer.momentum = 0.0  # Momentum of sgd / rmsprop (ignored by adam).
  config.optimizer.clip_norm = 0.0  # Global-norm gradient clipping threshold; 0 = off.
  config.optimizer.clip_value = 0.0  # Elementwise clipping to [-v, v] (Graves et al.); 0 = off.
  # Paper B's annealed gradient noise, variance eta / (1 + t)^gamma, added after
  # clipping; eta = 0 turns it off.
  config.optimizer.gradient_noise_eta = 0.0
  config.optimizer.gradient_noise_gamma = 0.55  # Paper B: 0.55.

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 10_000  # Parameter updates per run.
  config.train.batch_size = 64  # Examples per update per run (split over the devices).
  config.train.log_every = 100  # Steps between training-metric lines (and NaN checks).
  config.train.eval_every = 1_000  # Steps between evaluations on the fixed evaluation set.
  # A non-finite loss, gradient or update: "stop" ends training (the last checkpoint
  # is good; resume from it); "freeze" keeps that run at its last finite parameters,
  # records the step, and trains the other runs on (final metrics count them).
  config.train.on_nonfinite = "stop"
  # Saturation diagnostics: at each evaluation, also log for every group of noisy
  # units (each LSTM/GRU gate, the NTM's heads' gates) the fraction saturated
  # (|x| >= x_t), the mean injected noise sigma and the spread of p, from a forward
  # pass of the next update (its batch and noise). The train step is unchanged.
  config.train.unit_statistics = False

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 1_000  # Size of the fixed evaluation set.
  config.eval.seed = 1  # Seed of the evaluation set (fixed across runs and variants).
  config.eval.metric = "error_pct"  # Headline metric of the report ("error_pct", "loss", "bit_errors").
  config.eval.success_threshold = 5.0  # A run "succeeds" if its final metric is <= this.

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every = 1_000  # Steps between checkpoints (and at the last step).
  config.checkpoint.max_to_keep = 3  # Most recent checkpoints kept on disk.

  # The paper's number for this row, printed next to ours by experiments/report.py.
  config.paper = ml_collections.ConfigDict()
  config.paper.value = config_dict.placeholder(float)  # None: the paper has no number for it.
  config.paper.metric = ""  # What the paper's number measures, e.g. "test error %".
  config.paper.source = ""  # Where the number is, e.g. "Paper A, Table 5".
  return config


def graves_ntm(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Graves et al.'s (2014) NTM and its training settings, shared by the NTM tasks."""
  config.model = ml_collections.ConfigDict()
  config.model.name = "ntm"  # noisy_jax.nn.NTMCell under nn.RNN, then a Dense bit readout.
  config.model.controller = "lstm"  # "lstm" or "feedforward" controller.
  config.model.controller_size = 100  # Controller units (Graves et al., LSTM controller: 100).
  config.model.memory_size = 128  # Memory locations N (Graves et al.: 128).
  config.model.memory_width = 20  # Width M of a location (Graves et al.: 20).
  config.model.num_read_heads = 1  # Read heads (Graves et al., LSTM controller: 1).
  config.model.num_write_heads = 1  # Write heads.
  config.model.shift_range = 1  # Each head shifts by -1, 0 or +1.
  config.model.unroll = 1  # Scan steps unrolled per loop iteration (speed only).

  config.optimizer.name = "rmsprop"  # Graves et al.: RMSProp with momentum 0.9, lr 1e-4.
  config.optimizer.learning_rate = 1e-4
  config.optimizer.momentum = 0.9
  config.optimizer.clip_value = 10.0  # Graves et al.: gradients clipped elementwise to (-10, 10).

  config.train.batch_size = 32
  config.train.log_every = 500
  config.train.eval_every = 2_000

  config.eval.num_examples = 512
  config.eval.metric = "bit_errors"  # Wrong output bits per sequence (Graves et al.'s cost).
  config.eval.success_threshold = 0.5  # "Nails the task": under half a wrong bit per sequence.

  config.checkpoint.every = 5_000
  return config


def locked(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Locks ``config``: what every ``get_config`` returns, last.

  A locked ConfigDict (every section of it) refuses a new field, with a "Did you
  mean" for a misspelt one, and keeps each field's type (an int field refuses "x"); its
  fields stay overridable (``--config.<field>``, ``update_from_flattened_dict``).
  experiments/validation.py refuses a config that is not locked.
  """
  return config.lock()


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a few steps of a tiny model: `make test` trains every smoke variant."""
  config.variant = "smoke"
  config.num_seeds = 2
  config.train.num_steps = 4
  config.train.batch_size = 8
  config.train.log_every = 2
  config.train.eval_every = 2
  config.eval.num_examples = 16
  config.checkpoint.every = 2
  config.checkpoint.max_to_keep = 2
  return config
