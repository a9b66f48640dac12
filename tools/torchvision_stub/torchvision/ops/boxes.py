from torchvision._stand_in import missing

__getattr__ = missing(__name__)
