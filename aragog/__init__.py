"""aragog: just-in-time model routing and scheduling for agentic LLM workflows."""

from aragog.errors import AragogError

__all__ = ["AragogError", "Runtime"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The runtime pulls in the serving stack; load it only when someone asks for it.
    if name == "Runtime":
        from aragog.runtime.runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'aragog' has no attribute {name!r}")
