"""The package version, importable by any module without loading the front door (``aiiscan``)."""

__version__ = "0.1.0"
