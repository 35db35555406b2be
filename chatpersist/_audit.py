"""Auditing and recovering interrupted answers (library side of the CLI's audit,
sweep, continue and regenerate commands)."""

from __future__ import annotations


class AuditMixin:
    """Methods of `ChatStore` for operators: listing, counting, sweeping, recovering."""
