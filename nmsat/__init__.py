"""nmsat: hardware/software co-design for N:M sparse DNN training and inference.

The user-facing pieces live in sibling folders installed under this namespace:
``nmsat.workloads``, ``nmsat.dataflow``, ``nmsat.simulator``, ``nmsat.rtl`` and
``nmsat.reports``. The core shared by all of them is here: the accelerator
configuration (:mod:`nmsat.config`), the NumPy reference model of the arithmetic
(:mod:`nmsat.reference`), common enums (:mod:`nmsat.types`) and the CLI.
"""

__version__ = "0.1.0"
