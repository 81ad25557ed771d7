"""Exception classes. Each message says what was found, what was expected and what to do."""

from __future__ import annotations


class MedUIError(Exception):
    """Base class of every error MedUI raises on purpose."""


class UnreadableFileError(MedUIError):
    """A file could not be read as any supported image format."""


class UnsupportedImageError(MedUIError):
    """A readable file that holds no image MedUI can show (SR, RTSTRUCT, DICOMDIR, ...)."""


class ImageTooLargeError(MedUIError):
    """Decoding would exceed the configured memory cap."""


class UnsafeArchiveError(MedUIError):
    """A zip archive breaks a safety rule (path traversal, size, count, compression ratio)."""
