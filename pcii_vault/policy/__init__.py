"""Cedar protection policies: load, validate, decide, with obligations.

See `engine.PolicyEngine` (load once, decide per request) and `policies/README.md`.
"""

from pcii_vault.policy.engine import (
    Decision,
    PolicyEngine,
    PolicyLoadError,
    PolicyProblem,
    PolicySource,
    default_policy_directory,
)
from pcii_vault.policy.entities import PrincipalFacts, RecordFacts, RequestFacts
from pcii_vault.policy.obligations import Obligation

__all__ = [
    "Decision",
    "Obligation",
    "PolicyEngine",
    "PolicyLoadError",
    "PolicyProblem",
    "PolicySource",
    "PrincipalFacts",
    "RecordFacts",
    "RequestFacts",
    "default_policy_directory",
]
