"""reid: CSSC cloth-changing person re-identification (Wang et al., ICASSP 2025)."""

__version__ = "0.1.0"
