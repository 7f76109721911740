"""The prompt checks of the embedded default: a local prompt-shield stand-in.

The original calls Lakera Guard, Enkrypt and Azure AI Content Safety in turn, on ``user_prompt``
only, and the first failing check blocks the operation; this keeps that order and shape locally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INJECTION = re.compile(
    r"ignore (all )?(previous|prior|above) instructions|disregard (the )?system prompt|you are now DAN",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    checks: tuple[str, ...]
    reason: str = ""


def check_prompt(prompt: str) -> Verdict:
    checks = ("PromptShield",)
    if INJECTION.search(prompt):
        return Verdict(False, checks, "The content safety service has detected potential prompt injection or"
                                      " jailbreak attempts in the user prompt.")
    return Verdict(True, checks)
