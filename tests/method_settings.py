"""Per-method test settings, shared by every generic test over the registry (as Composer's
``algorithm_settings.py``): small values so that each method's boundary logic runs within 5 epochs.
"""

from __future__ import annotations

from typing import Any

# Mini-generations / cycles of 2 epochs, so that 5 epochs cross two boundaries.
SETTINGS: dict[str, dict[str, Any]] = {
    "lstsd": {"generation_epochs": 2},
    "lstsd_wo_long": {"generation_epochs": 2},
    "lstsd_wo_short": {"generation_epochs": 2},
    "lstsd_single": {"generation_epochs": 2, "rampup_epochs": 2},   # resumed inside the ramp-up
    "mean_teacher": {"ema_decay": 0.9},
    "temporal_ensembling": {"rampup_epochs": 2},
    "snapshot_ensembles": {"cycle_epochs": 2},
    "snapshot_distillation": {"cycle_epochs": 2},
}
DEFAULT_SETTINGS: dict[str, Any] = {}
# A setting that differs from SETTINGS, per method (every method is also tried with another num_samples).
OTHER_SETTINGS: dict[str, dict[str, Any]] = {
    "lstsd": {"generation_epochs": 3},
    "lstsd_wo_long": {"lambda_short": 1.0},
    "lstsd_wo_short": {"lambda_long": 1.0},
    "lstsd_single": {"lambda_long": 1.0},
    "mean_teacher": {"ema_decay": 0.99},
    "temporal_ensembling": {"ensemble_momentum": 0.5},
    "snapshot_ensembles": {"max_snapshots": 1},
    "snapshot_distillation": {"cycle_epochs": 3},
    "ps_kd": {"alpha_T": 0.5},
    "label_smoothing": {"smoothing": 0.2},
}
EPOCHS, RESUME_AT = 5, 3            # resume inside the second mini-generation (epochs 2-3)


def settings_of(name: str) -> dict[str, Any]:
    """The test settings of method ``name`` (``{}`` for those that need none)."""
    return {**DEFAULT_SETTINGS, **SETTINGS.get(name, {})}


# Settings each method must refuse (the error names the setting).
BAD_SETTINGS = [
    ("mean_teacher", {"ema_decay": 1.5}), ("mean_teacher", {"lambda_teacher": -1.0}),
    ("mean_teacher", {"temperature": 0.0}), ("mean_teacher", {"kl_direction": "forward"}),
    ("temporal_ensembling", {"ensemble_momentum": 1.0}), ("temporal_ensembling", {"rampup_epochs": -1}),
    ("snapshot_ensembles", {"cycle_epochs": 0}), ("snapshot_ensembles", {"max_snapshots": 0}),
    ("snapshot_ensembles", {"eta_min": -0.1}), ("snapshot_distillation", {"lambda_teacher": float("nan")}),
    ("snapshot_distillation", {"cycle_epochs": 1.5}), ("lstsd_single", {"generation_epochs": 0}),
    ("lstsd_single", {"lambda_short": -2.0}), ("lstsd_single", {"rampup_epochs": 1.5}),
    ("lstsd", {"rampup_epochs": -1}), ("ps_kd", {"alpha_T": 1.5}),
    ("label_smoothing", {"smoothing": -0.1}), ("label_smoothing", {"smoothing": 2.0}),
]


# The framework integration tests (Lightning, HF Trainer): every teacher active from the second epoch.
FRAMEWORK_SETTINGS: dict[str, dict[str, Any]] = {
    "lstsd": {"generation_epochs": 1, "bank_dtype": "float32"},
    "lstsd_wo_long": {"generation_epochs": 1},
    "lstsd_wo_short": {"generation_epochs": 1},
    "lstsd_single": {"generation_epochs": 1},
    "mean_teacher": {"ema_decay": 0.9},
    "temporal_ensembling": {},
    "ps_kd": {},
    "snapshot_ensembles": {"cycle_epochs": 1},
    "snapshot_distillation": {"cycle_epochs": 1},
    "label_smoothing": {},
    "vanilla": {},
}


def framework_settings(without: str, **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:data:`FRAMEWORK_SETTINGS` less the method ``without`` (one Table 3 ablation is enough per
    framework, and each costs seconds), with some methods' settings replaced by ``changes``."""
    return {name: changes.get(name, settings) for name, settings in FRAMEWORK_SETTINGS.items() if name != without}
