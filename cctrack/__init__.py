"""cctrack: multi-camera person tracking with cloth-changing re-identification."""

__version__ = "0.1.0"
