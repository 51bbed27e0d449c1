"""Mosaic's built-in plugins. Each registers through the ``mosaic.plugins``
entry points exactly as a third-party package would; none imports another."""
