"""``memrl tune SPEC.yaml [key=value ...] [--resume]``: a Ray Tune search over a memrl config.

One module per concept: ``spec`` (the file), ``variants`` (the trials), ``trial`` (one trial,
on memrl's training loop), ``search`` (the Tuner), ``report`` (the table), ``command`` (the CLI).

A search spec is YAML (see ``configs/tune/tmaze.yaml``)::

    name: tmaze-search          # experiment folder under storage_path
    base: demo/gru              # the memrl config every trial starts from
    storage_path: results/tune  # made absolute against the launch directory
    overrides:                  # fixed dotted keys for every trial (as `memrl train` key=value)
      stop.iterations: 8
    search:                     # dotted key -> one space
      ppo.lr: {loguniform: [0.001, 0.01]}
      ppo.entropy_coeff: {grid_search: [0.0, 0.003]}
    cores:                      # optional: a grid over cores, each with kwargs valid for it
      gru:
        core_kwargs: {hidden_size: 32, num_layers: 1}
        search: {model.core_kwargs.hidden_size: {choice: [16, 32]}}
      gtrxl:
        core_kwargs: {d_model: 32, num_layers: 1, num_heads: 2, memory_len: 8, d_ff: 64}
        search: {model.core_kwargs.memory_len: {grid_search: [4, 8]}}
    num_samples: 1              # random draws per grid point
    seed: 0                     # seeds the random draws (same seed, same trials)
    metric: episode_return_mean
    mode: max
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}   # or {type: fifo}

Spaces: ``grid_search: [values]``, ``choice: [values]``, ``uniform: [low, high]``,
``loguniform: [low, high]`` (low > 0), ``randint: [low, high)``. A ``cores`` entry replaces
``model.core_kwargs`` wholesale, so no trial carries a kwarg of another core. Trials are
grid points x ``num_samples``; random values are drawn anew per grid point of ``search`` and
per core, and a grid inside one core's ``search`` shares its core's draws (a paired comparison).

``storage_path`` must be reachable from every node that runs trials (one machine, NFS).

Every trial's config is drawn here, up front (Tune's own variant generator, seeded), and
validated through :mod:`memrl.config` before Ray starts: an invalid space fails in a second
with the offending dotted key. Tune then runs exactly those configs (ASHA may stop some early);
each trial trains with memrl's own loop pieces, so it writes memrl's TensorBoard scalars and
checkpoints under its trial folder. ``--resume`` continues an interrupted experiment from the
trials' last checkpoints (``tune.Tuner.restore``) and reprints the table of a finished one.
"""

from memrl.tune.command import main
from memrl.tune.report import print_report, results_table, short_names
from memrl.tune.search import BASE_FILE, run
from memrl.tune.spec import (
    CORE_KEY,
    CORE_KWARGS_KEY,
    SPACES,
    CoreBranch,
    SchedulerSpec,
    TuneSpec,
    TuneSpecError,
    load_tune_spec,
    param_spec,
    parse_space,
)
from memrl.tune.trial import REPORTED, train_trial, trial_dirname
from memrl.tune.variants import (
    Variant,
    base_data,
    draw_variants,
    override,
    plan,
    trial_config,
    validate_variants,
)

__all__ = [
    "BASE_FILE",
    "CORE_KEY",
    "CORE_KWARGS_KEY",
    "REPORTED",
    "SPACES",
    "CoreBranch",
    "SchedulerSpec",
    "TuneSpec",
    "TuneSpecError",
    "Variant",
    "base_data",
    "draw_variants",
    "load_tune_spec",
    "main",
    "override",
    "param_spec",
    "parse_space",
    "plan",
    "print_report",
    "results_table",
    "run",
    "short_names",
    "train_trial",
    "trial_config",
    "trial_dirname",
    "validate_variants",
]
