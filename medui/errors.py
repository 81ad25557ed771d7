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


class CardError(MedUIError):
    """A model card is missing, unreadable or inconsistent with its model."""


class ModelLoadError(MedUIError):
    """A model file could not be loaded safely."""


class ModelExistsError(MedUIError):
    """Registering would overwrite an existing model version."""


class WeightsUnavailableError(MedUIError):
    """Pretrained weights could not be obtained (offline, or a bad local file)."""


class DatasetError(MedUIError):
    """A dataset that cannot be trained on, with what was found and what would work; `unreadable`
    lists the files that could not be used ({"file", "reason"}), for the page to show."""

    def __init__(self, message: str, unreadable: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.unreadable = list(unreadable or [])


class DatasetUnavailableError(MedUIError):
    """A public dataset could not be obtained."""


class TrainingError(MedUIError):
    """Training could not start or finish, with what to do."""


class ServerFolderError(MedUIError):
    """A folder on the server that this server does not let users train from (or that is missing)."""


class PromotionRefusedError(MedUIError):
    """The promotion gate refused a model and no override reason was given."""


class RegistryStateError(MedUIError):
    """The registry's promotion state (promotions.json) or audit log cannot be read or written."""


class LoadBudgetError(ImageTooLargeError):
    """One load would hold more memory than its budget (all series, archives and inflated files)."""


class InvalidHeaderError(UnreadableFileError):
    """A header value (named by its tag or field) that cannot be used as it is."""


class RegistryWriteError(MedUIError):
    """The model registry folder cannot take a new model (read-only, full, or not a folder)."""


class JobFolderError(TrainingError):
    """The jobs folder cannot take a new job (read-only, full, or not a folder)."""


class SeriesExpiredError(MedUIError):
    """A series the server dropped from memory after it went unused: it must be opened again."""


class ModelFileError(ModelLoadError):
    """A `.keras` file refused before Keras opens it (not a zip, unexpected or unsafe members, sizes)."""


class DatasetScanError(DatasetError):
    """Listing a training folder stopped: too many entries, too long, cancelled, or outside the data roots."""


class PacsConfigError(MedUIError):
    """The PACS configuration (.streamlit/pacs.toml, MEDUI_PACS_CONFIG, MEDUI_DICOMWEB_URL) is missing or wrong."""


class PacsConnectionError(MedUIError):
    """A PACS could not be reached, refused the association or timed out (never names a credential)."""


class PacsAuthError(PacsConnectionError):
    """A PACS refused MedUI's credentials (HTTP 401/403)."""


class PacsTimeoutError(PacsConnectionError):
    """A PACS stopped answering in the middle of a request."""


class PacsRequestError(MedUIError):
    """A PACS answered a search, retrieve or store with an error status."""


class ResultsError(MedUIError):
    """AI results could not be built as DICOM objects or a report (e.g. no DICOM source headers)."""


class NotAllowedError(MedUIError):
    """The signed-in user's roles do not allow an action (refused on the server, whatever the page showed)."""


class DatabaseError(MedUIError):
    """MedUI's database (MEDUI_DB_URL, default SQLite in the jobs folder) cannot be opened, migrated or used."""


class BatchError(MedUIError):
    """A batch scoring job cannot be started, resumed or run as asked (source, model, state)."""


class AuditStoreError(DatabaseError):
    """The audit trail (MEDUI_DB_URL) cannot be opened, written or read."""


class AuthConfigError(MedUIError):
    """Sign-in is required (MEDUI_REQUIRE_AUTH=1) or configured, but its configuration is missing or unusable."""


class RayClusterError(MedUIError):
    """The Ray cluster MEDUI_RAY_ADDRESS names cannot be reached, refuses the job, or does not know it."""


class SharedStorageError(RayClusterError):
    """A job on Ray would read or write a folder the cluster's nodes do not share (relative, or not visible)."""
