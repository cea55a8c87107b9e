"""``sluice``, the command line (console script ``sluice = cluster.cli:main``)."""
from cluster.cli.parser import main

__all__ = ["main"]
