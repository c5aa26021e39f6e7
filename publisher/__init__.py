"""The publishing side: the Python API, the `feed` command line."""

from publisher.api import Publisher

__all__ = ["Publisher"]
