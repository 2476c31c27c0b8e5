"""radiodiff: score-based diffusion simulator of radio-galaxy images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("radiodiff")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
