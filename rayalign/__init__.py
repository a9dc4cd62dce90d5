"""rayalign: align language models with as little human effort as possible, on Ray."""

__version__ = "0.1.0"
