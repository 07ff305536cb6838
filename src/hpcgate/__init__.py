"""hpcgate: an HTTP gateway to HPC clusters."""

__version__ = "0.1.0"
