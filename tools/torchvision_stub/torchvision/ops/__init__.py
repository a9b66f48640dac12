from poc import boxes  # noqa: F401
