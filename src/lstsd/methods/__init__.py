"""Methods behind one interface, and a registry by name.

Every method (vanilla training, LSTSD, each baseline) is a :class:`Method`: an ``nn.Module`` holding
the method's state (banks, teachers) that the training loop calls at fixed points. The hooks
cover everything the one-generation teacher–student methods of the paper need:

=========================  ==================================================================
hook                       used for
=========================  ==================================================================
``setup(model, epochs=,    start of fit (and before ``load_state_dict`` on resume): Mean
steps_per_epoch=)``        Teacher copies the network into its EMA teacher
``configure_lr_scheduler`` a method-specific LR schedule, stepped every iteration (cyclic
                           cosine per mini-generation for the snapshot methods); ``None``
                           keeps the trainer's schedule
``start_epoch(epoch)``     per-epoch state (LSTSD's mini-generation)
``loss(logits, y, idx,     the mini-batch loss (a template around the method's
model=, inputs=)``         ``compute_loss``); ``model=``/``inputs=`` let a method run a
                           teacher forward pass on the same batch
``end_step(model)``        after each optimizer step (EMA updates)
``end_epoch(model)``       bank roll-over, snapshots
``eval_predictions``       the predictors reported at evaluation: ``{"model": probs, ...}``
                           (an ensemble of snapshots adds ``"ensemble"``)
``loss_components()``      detached parts of the last loss, for logging without a sync
``loss_weights()``         the weight of each part in the last loss (λ's, ramp-ups, α_t)
``state_dict`` / ``load``  full state (banks, teachers, snapshots, counters): exact resume;
                           ``.to(device)`` moves it (it also follows the logits by itself)
=========================  ==================================================================

Settings shared by several methods are validated once, in :mod:`lstsd.methods.settings`
(:class:`~lstsd.methods.settings.Distillation`, :class:`~lstsd.methods.settings.MiniGenerations`).

A new method is one file that subclasses :class:`Method`, implements
:meth:`~Method.compute_loss` (the loss and its weighted parts; :meth:`Method.loss` checks the
batch around it), declares what it needs (``needs_indices``, ``keeps_per_sample_state``,
``extra_forward_passes``, ``needs_model_inputs``, ``copies_network``, ``schedules_lr``: see
:class:`Method`) and registers itself:

>>> import torch
>>> from lstsd.losses import cross_entropy
>>> @register_method("weighted_ce")
... class WeightedCE(Method):
...     '''Cross-entropy with a fixed weight on the loss (an illustration).'''
...     def __init__(self, num_samples, num_classes, weight: float = 1.0, **kw):
...         super().__init__(num_samples, num_classes, **kw)
...         self.weight = weight
...     def compute_loss(self, epoch, logits, targets, indices, *, model, inputs):
...         ce = cross_entropy(logits, targets)            # the batch is checked by Method.loss
...         return self.weight * ce, {"ce": (ce, self.weight)}
...     def hparams(self):
...         return {**super().hparams(), "weight": self.weight}
>>> method = create_method("weighted_ce", num_samples=1000, num_classes=10, weight=0.5)
>>> method.start_epoch(0)
>>> round(method.loss(torch.zeros(2, 10), torch.tensor([1, 2]), torch.tensor([0, 1])).item(), 4)
1.1513
>>> method.loss_weights()
{'ce': 0.5}
>>> unregister_method("weighted_ce")

Registered now: see :func:`available_methods`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Method
from .label_smoothing import LabelSmoothing
from .lstsd import LSTSD, lstsd_loss
from .lstsd_single import LSTSDSingle
from .mean_teacher import MeanTeacher
from .ps_kd import PSKD
from .settings import Distillation, MiniGenerations, check_fraction, check_int, check_weight
from .snapshot_distillation import SnapshotDistillation
from .snapshot_ensembles import SnapshotEnsembles
from .temporal_ensembling import TemporalEnsembling
from .vanilla import Vanilla

MethodFactory = Callable[..., Method]
_REGISTRY: dict[str, MethodFactory] = {}
_T = TypeVar("_T", bound=MethodFactory)


def register_method(name: str, factory: MethodFactory | None = None) -> Any:
    """Register ``factory`` (a :class:`Method` subclass or a function returning one) as ``name``.

    Usable as a decorator (``@register_method("x")``) or directly (``register_method("x", cls)``).
    Re-registering a name raises ``ValueError``.
    """
    def add(f: _T) -> _T:
        if name in _REGISTRY:
            raise ValueError(f"a method named {name!r} is already registered")
        _REGISTRY[name] = f
        return f
    return add if factory is None else add(factory)


def unregister_method(name: str) -> None:
    """Remove ``name`` from the registry (e.g. a method registered by a test or an example)."""
    if name not in _REGISTRY:
        raise ValueError(f"no method named {name!r} is registered; registered: {', '.join(available_methods())}")
    del _REGISTRY[name]


def available_methods() -> list[str]:
    """Names accepted by :func:`create_method`, sorted."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type[Method]:
    """The :class:`Method` subclass that registered method ``name`` builds (for its class-level
    declarations, e.g. ``takes_per_token``, before building one).

    Example:
        >>> method_class("lstsd_wo_long").__name__, method_class("vanilla").accepts_sequences
        ('LSTSD', True)
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    cls = inspect.unwrap(_REGISTRY[name])          # an ablation's builder wraps LSTSD
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"method {name!r} is registered as a function that does not wrap a Method class")
    return cls


def _accepted_keywords(factory: MethodFactory) -> set[str] | None:
    params = inspect.signature(factory).parameters.values()   # a class's: its __init__'s, without self
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name not in ("self", "num_samples", "num_classes")}


def create_method(name: str, *, num_samples: int, num_classes: int, **hparams: Any) -> Method:
    """Build the registered method ``name`` for a training set of ``num_samples`` and ``num_classes``.

    Raises:
        ValueError: unknown method name, or a hyper-parameter the method does not accept.

    Example:
        >>> method = create_method("lstsd", num_samples=50000, num_classes=100, generation_epochs=6)
        >>> method
        LSTSD(num_samples=50000, num_classes=100, generation_epochs=6, lambda_long=2.4, lambda_short=4.0,
              temperature=2.0, kl_direction='teacher_student', t2_scale=False, rampup_epochs=0, bank_dtype='float16',
              bank_format='dense', bank_topk=None, record_targets='training_forward', long_term_teacher='generations')
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    factory = _REGISTRY[name]
    accepted = _accepted_keywords(factory)
    if accepted is not None:
        unknown = sorted(set(hparams) - accepted)
        if unknown:
            raise ValueError(f"method {name!r} does not accept {unknown}; its settings are {sorted(accepted)}")
    method = factory(num_samples=num_samples, num_classes=num_classes, **hparams)
    method.name = name
    return method


def resolved_settings(name: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full settings of method ``name`` given ``settings`` (its defaults filled in), as its
    :meth:`~Method.hparams` report them, without ``num_samples`` and ``num_classes``.

    Raises:
        ValueError: unknown method name, or settings the method refuses.

    Example:
        >>> resolved_settings("label_smoothing")
        {'smoothing': 0.1}
    """
    # One sample and a class count above any top-k a config may ask for: a few hundred KB at most.
    method = create_method(name, num_samples=1, num_classes=65536, **dict(settings or {}))
    return {k: v for k, v in method.hparams().items() if k not in ("num_samples", "num_classes")}


def _ablation(weight_name: str) -> MethodFactory:
    """LSTSD with one teacher's weight fixed at 0 (Table 3, "w/o Long" / "w/o Short")."""
    @functools.wraps(LSTSD, updated=())
    def build(num_samples: int, num_classes: int, **hparams: Any) -> LSTSD:
        if hparams.get(weight_name, 0.0) != 0.0:
            raise ValueError(f"this ablation fixes {weight_name}=0; use method 'lstsd' to set it")
        hparams[weight_name] = 0.0
        return LSTSD(num_samples, num_classes, **hparams)
    # create_method checks settings against this signature; typeshed does not declare __signature__.
    build.__signature__ = inspect.signature(LSTSD)  # type: ignore[attr-defined]
    return build


register_method("vanilla", Vanilla)
register_method("lstsd", LSTSD)
register_method("lstsd_wo_long", _ablation("lambda_long"))
register_method("lstsd_wo_short", _ablation("lambda_short"))
register_method("lstsd_single", LSTSDSingle)
register_method("mean_teacher", MeanTeacher)
register_method("temporal_ensembling", TemporalEnsembling)
register_method("snapshot_ensembles", SnapshotEnsembles)
register_method("snapshot_distillation", SnapshotDistillation)
register_method("ps_kd", PSKD)
register_method("label_smoothing", LabelSmoothing)

__all__ = ["LSTSD", "Distillation", "LSTSDSingle", "LabelSmoothing", "MeanTeacher", "Method", "MiniGenerations",
           "PSKD", "SnapshotDistillation", "SnapshotEnsembles", "TemporalEnsembling", "Vanilla", "available_methods",
           "check_fraction", "check_int", "check_weight", "create_method", "lstsd_loss", "method_class",
           "register_method", "resolved_settings", "unregister_method"]
