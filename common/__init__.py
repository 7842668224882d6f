"""Small standard-library helpers every stage shares (dataclass-driven CLIs, atomic file writes).

Imports nothing but the standard library, so the torch-free edge path can use it too.
"""
