"""The serving runtime: the asyncio shell around the orchestrator, on real engines.

``from aragog.runtime.runtime import Runtime`` (also ``aragog.Runtime``) is the
embeddable API; :mod:`aragog.runtime.deploy` reads the deployment file it starts from.
Nothing is imported here, so ``import aragog.runtime`` stays cheap.
"""
