"""The version of p3m (its own module, at the bottom of the layers, so any module can read it)."""

__version__ = "0.1.0"
