"""Errors raised at the library's edge, with messages that name the problem."""
from __future__ import annotations


class ConfigError(ValueError):
    """A config file, preset, override or method setting is invalid; the message names the field."""


class CheckpointFileError(ConfigError):
    """A checkpoint file to convert or load is unreadable, of another kind than named, or does not
    match the network it should hold; the message names the file and what was expected."""
