"""reid: CSSC cloth-changing person re-identification (Wang et al., ICASSP 2025)."""

__version__ = "0.1.0"

from reid.embedder import Embedder  # noqa: E402  (after __version__ so tools can read it without torch)

__all__ = ["Embedder", "__version__"]
