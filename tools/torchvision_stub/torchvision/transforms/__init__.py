from torchvision._stand_in import missing

from . import functional, transforms  # noqa: F401
from .transforms import InterpolationMode  # noqa: F401

__getattr__ = missing(__name__)
