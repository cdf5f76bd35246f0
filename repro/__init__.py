"""repro: a benchmark and reproduction harness for motion-representation action recognition."""
__version__ = "0.1.0"
