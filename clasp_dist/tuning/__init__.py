"""Ray Tune sweeps: ablation arms and hyper-parameter search, in the command line's dotted keys.

Modules: ``spaces`` (the ablation arms and the search spaces), ``runner`` (trials, their resources and
the Tune run), ``identity`` (what a sweep is and the folder that holds it), ``report`` (results, summaries
and their files).
"""

from .identity import (
    SWEEP_RECORD,
    SweepIdentityError,
    SweepSpec,
    claim_sweep_dir,
    default_sweep_dir,
    describe_difference,
    read_record,
)
from .report import (
    markdown_table,
    result_rows,
    summarise_arms,
    write_outputs,
)
from .runner import (
    TRIAL_CPU,
    absolute_base,
    cpus_per_trial,
    make_trainable,
    max_concurrent_trials,
    run_sweep,
    sweep_concurrency,
    trial_config,
    trial_demand,
    trial_resources,
    tune_storage,
)
from .spaces import (
    ABLATION_ARMS,
    ARM_KEYS,
    CORE_ARMS,
    ablation_space,
    arm_settings,
    build_space,
    hparam_space,
    trial_overrides,
    validate_space,
)

__all__ = [
    "ABLATION_ARMS",
    "ARM_KEYS",
    "CORE_ARMS",
    "SWEEP_RECORD",
    "SweepIdentityError",
    "SweepSpec",
    "TRIAL_CPU",
    "absolute_base",
    "ablation_space",
    "arm_settings",
    "build_space",
    "claim_sweep_dir",
    "cpus_per_trial",
    "default_sweep_dir",
    "describe_difference",
    "hparam_space",
    "make_trainable",
    "markdown_table",
    "max_concurrent_trials",
    "read_record",
    "result_rows",
    "run_sweep",
    "summarise_arms",
    "sweep_concurrency",
    "trial_config",
    "trial_demand",
    "trial_overrides",
    "trial_resources",
    "tune_storage",
    "validate_space",
    "write_outputs",
]
