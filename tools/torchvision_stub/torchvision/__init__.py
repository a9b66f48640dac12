"""Import-only torchvision stand-in for the mmdeploy venv (see ../README.md): mmpretrain imports these modules
when it loads; exporting a classifier calls none of them."""
from . import ops, transforms  # noqa: F401

__version__ = "0.0.0+poc.stand.in"
