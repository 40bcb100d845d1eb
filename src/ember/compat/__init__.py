"""Compatibility layers for code written against other tools' APIs (``compat.torchkeras``)."""
