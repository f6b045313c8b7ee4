"""aragog: just-in-time model routing and scheduling for agentic LLM workflows."""

from aragog.errors import AragogError

__all__ = ["AragogError"]
__version__ = "0.1.0"
