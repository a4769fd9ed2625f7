"""freqnn: neural networks that learn in the frequency domain."""

__version__ = "0.1.0"
