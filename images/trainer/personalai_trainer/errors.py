"""Errors the trainer reports as one line and a non-zero exit (no traceback): bad config, bad data."""

from __future__ import annotations


class TrainerError(Exception):
    """A problem the user can fix; the message names the field or line, never personal text."""

    exit_code = 1


class ConfigError(TrainerError):
    """The config is malformed, contradictory or impossible on this machine."""

    exit_code = 2


class DataError(TrainerError):
    """The reflections cannot be read or leave nothing to train on."""

    exit_code = 3
