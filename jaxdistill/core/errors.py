"""Errors raised at the library's edge, with messages that name the problem."""
from __future__ import annotations


class ConfigError(ValueError):
    """A config file, preset, override or method setting is invalid; the message names the field."""
