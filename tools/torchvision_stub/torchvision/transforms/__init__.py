from poc import functional, transforms  # noqa: F401
from poc.transforms import InterpolationMode  # noqa: F401
from torchvision._stand_in import missing

__getattr__ = missing(__name__)
