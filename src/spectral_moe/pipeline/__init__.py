"""Orchestration: a run (train, evaluate, figures), run reuse, the comparison of methods, the demo.

The top of the library below the command line: it may import every other folder, and none imports it.
:func:`train` is one run end to end (:mod:`spectral_moe.pipeline.run`), :func:`train_or_reuse` the same
but reusing a finished run (:mod:`spectral_moe.pipeline.reuse`), :func:`run_compare` several methods and
seeds (:mod:`spectral_moe.pipeline.compare`).
"""

from .compare import run_compare
from .demo import demo_config
from .reuse import train_or_reuse
from .run import RunConfig, train

__all__ = ["RunConfig", "demo_config", "run_compare", "train", "train_or_reuse"]
