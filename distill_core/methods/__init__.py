"""Training objectives ("methods"), one module each, one shared interface.

A method is a small class with a config dataclass holding the paper's defaults::

    method = build_method("trades", model, {"beta": 6.0})
    loss, logs = method.loss(x, y, state)     # logs: named floats the app plots

The Trainer owns the optimiser, schedule, events and checkpoints; a method only says what
the loss of one batch is. Teachers are passed by role (``teachers={"teacher": net}``),
frozen and put in eval mode here, never trained.
"""

from __future__ import annotations

from ._base import (
    ConfigField,
    Controls,
    Method,
    TrainState,
    bounded,
    build_method,
    check_config,
    config_fields,
    field_bounds,
    freeze,
    get_method,
    list_methods,
    make_config,
    register_method,
)

# isort: split
# Importing each module runs its @register_method decorator; the order is the registry's.
from . import standard, pgd_at, trades, kd, defensive, bss, ard, rslad, mtard  # noqa: F401, I001

__all__ = [
    "ConfigField",
    "Controls",
    "Method",
    "TrainState",
    "bounded",
    "build_method",
    "check_config",
    "config_fields",
    "field_bounds",
    "freeze",
    "get_method",
    "list_methods",
    "make_config",
    "register_method",
]
