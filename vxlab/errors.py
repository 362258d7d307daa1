"""LabError: the one exception the lab raises for an operation it refused or that failed."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation failed or was refused; the message says what and why."""
