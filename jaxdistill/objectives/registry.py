"""Method name -> (objective module, settings class).

Each method's hyperparameters are a frozen settings dataclass in its objective module
(``jaxdistill.core.hparams``); its ``section`` names the run config's section that holds them.
Each module exposes ``build(ctx: jaxdistill.build.BuildContext, settings) -> (objective, frozen)``,
which adds the run's networks, teacher and optimisers to the settings. Modules are imported
lazily, so adding a method is one line here.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import ml_collections

from jaxdistill.core import hparams
from jaxdistill.core.errors import ConfigError

METHODS: dict[str, tuple[str, str]] = {
    "teacher": ("jaxdistill.objectives.denoising", "Denoising"),
    "kd": ("jaxdistill.objectives.kd", "KD"),
    "pd": ("jaxdistill.objectives.progressive", "PD"),
    "guided": ("jaxdistill.objectives.guided", "Guided"),
    "cd": ("jaxdistill.objectives.consistency", "CD"),
    "lcm": ("jaxdistill.objectives.lcm", "LCM"),
    "tcd": ("jaxdistill.objectives.tcd", "TCD"),
    "hypersd": ("jaxdistill.objectives.segmented", "HyperSD"),
    "tdd": ("jaxdistill.objectives.segmented", "TDD"),
    "scott": ("jaxdistill.objectives.segmented", "SCott"),
    "ct": ("jaxdistill.objectives.consistency", "CT"),
    "ict": ("jaxdistill.objectives.consistency", "ICT"),
    "ect": ("jaxdistill.objectives.consistency", "ECT"),
    "scd": ("jaxdistill.objectives.scm", "SCD"),
    "sct": ("jaxdistill.objectives.scm", "SCT"),
    "shortcut": ("jaxdistill.objectives.shortcut", "Shortcut"),
    "meanflow": ("jaxdistill.objectives.meanflow", "MeanFlow"),
    "ctm": ("jaxdistill.objectives.ctm", "CTM"),
    "reflow": ("jaxdistill.objectives.reflow", "Reflow"),
    "instaflow": ("jaxdistill.objectives.reflow", "InstaFlow"),
    "vsd": ("jaxdistill.objectives.dmd", "VSD"),
    "swiftbrush": ("jaxdistill.objectives.dmd", "SwiftBrush"),
    "dmd": ("jaxdistill.objectives.dmd", "DMD"),
    "dmd2": ("jaxdistill.objectives.dmd", "DMD2"),
    "fdistill": ("jaxdistill.objectives.dmd", "FDistill"),
    "sid": ("jaxdistill.objectives.sid", "SiD"),
    "sida": ("jaxdistill.objectives.sid", "SiDA"),
    "sim": ("jaxdistill.objectives.sid", "SIM"),
    "add": ("jaxdistill.objectives.adversarial", "ADD"),
    "ladd": ("jaxdistill.objectives.adversarial", "LADD"),
}


def module(method: str) -> ModuleType:
    """The objective module of ``method``."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {tuple(METHODS)}")
    return importlib.import_module(METHODS[method][0])


def settings_class(method: str) -> type:
    """The method's settings dataclass; ``settings_class(method)()`` is the paper's method."""
    return getattr(module(method), METHODS[method][1])


def section(method: str) -> str:
    """Name of the run config's section holding the method's settings."""
    return settings_class(method).section


def default_config(method: str) -> ml_collections.ConfigDict:
    """The method's config section with its paper defaults."""
    return hparams.to_section(settings_class(method)())


def settings(config: ml_collections.ConfigDict) -> Any:
    """The settings of ``config.method`` read from its config section (keys and types checked;
    missing keys keep the paper's values)."""
    cls = settings_class(config.method)
    return hparams.from_section(cls, config[cls.section] if cls.section in config else None, cls.section)


def build(ctx) -> tuple[Any, Any]:
    """(objective, frozen) of the run config ``ctx.config``."""
    method = ctx.config.method
    try:
        return module(method).build(ctx, settings(ctx.config))
    except ConfigError:
        raise
    except ValueError as err:  # an objective's check of settings against the run (process, NFEs, ...)
        raise ConfigError(f"{method}: {err}") from err
