"""lstsd: Long Short-Term Sample Distillation (Jiang et al., AAAI 2020) for PyTorch.

The core library (this package without :mod:`lstsd.harness`) needs only torch and numpy:

* :class:`LSTSD`, the method of Algorithm 1, a drop-in object for any training loop;
* :class:`SoftTargetBank`, the per-sample soft-target store behind it;
* :mod:`lstsd.losses`, the distillation KL with temperature;
* :mod:`lstsd.methods`, the shared method interface and the registry of baselines;
* :class:`lstsd.data.IndexedDataset`, which makes a data set yield each sample's index.
"""

from importlib import metadata as _metadata

from . import losses, methods
from .bank import SoftTargetBank
from .data import IndexedDataset
from .losses import distillation_kl
from .methods import LSTSD, Method, available_methods, create_method, register_method

try:   # the installed distribution's version (pyproject.toml's, as of the last install); CHANGELOG.md
    __version__ = _metadata.version("lstsd")
except _metadata.PackageNotFoundError:   # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = ["LSTSD", "IndexedDataset", "Method", "SoftTargetBank", "available_methods", "create_method",
           "distillation_kl", "losses", "methods", "register_method", "__version__"]
