"""The exceptions aragog raises for bad input.

Every error a user can cause derives from :class:`AragogError`, and its message is one
line that names where the problem is (file, field), what was expected and what was
found. The CLI prints that line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class AragogError(Exception):
    """Root of every error that bad input to aragog can cause."""


class WorkflowError(AragogError):
    """A workflow definition is malformed (cycle, unknown agent, wrong type...)."""


class CatalogError(AragogError):
    """A model family or GPU catalog is malformed or names something unknown."""


class ProfileError(AragogError):
    """An accuracy profile is malformed or does not fit its workflow."""


class TraceError(AragogError):
    """A request trace cannot be read or holds values out of range."""


class SchedulingError(AragogError):
    """Arguments to a scheduling round are inconsistent (shapes, ranges, dtypes)."""


class ConfigError(AragogError):
    """A command-line or experiment setting is out of range."""
