def missing(module: str):
    """A module ``__getattr__``: a class name gives a placeholder class (mmpretrain subclasses some at import time)
    that refuses to be instantiated; anything else raises at once, saying what this package is."""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            def __init__(self, *args, **kwargs):
                raise RuntimeError(_message(module, name))
            return type(name, (), {"__init__": __init__, "__module__": module})
        raise RuntimeError(_message(module, name))
    return __getattr__


def _message(module: str, name: str) -> str:
    return (f"{module}.{name}: this is the import-only torchvision stand-in of the mmdeploy venv; the export path "
            "does not use torchvision, and nothing else should call it")
