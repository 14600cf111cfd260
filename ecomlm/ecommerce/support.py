"""What a support agent answers with. The agent itself (SupportAgent: retrieval,
generation, order lookup, hand-off) lands with text generation; the Reply
shape is fixed now so callers can rely on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Reply", "HANDOFF_REASONS"]

HANDOFF_REASONS = ("low_confidence", "customer_request", "out_of_scope", "sensitive", "other_customer")


@dataclass
class Reply:
    text: str                                        # what the customer reads
    sources: list = field(default_factory=list)      # KB ids the answer used
    handoff: bool = False                            # True: a human should take over
    reason: Optional[str] = None                     # why it handed off (HANDOFF_REASONS), else None
