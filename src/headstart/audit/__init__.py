"""`headstart audit`: find unusable files, duplicates, leaks, imbalance and likely label errors
before training, and write what to leave out (flagged.csv) for `train --exclude-audit`."""

from .run import AuditResult, AuditSettings, audit

__all__ = ["audit", "AuditResult", "AuditSettings"]
