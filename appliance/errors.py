"""One exception tree for the whole appliance.

Every error the appliance raises on purpose is an `ApplianceError`, with a subclass per
subsystem; each carries a hint that tells a person how to mend it. The command line
prints them as `appliance: error: ...` and `appliance: hint: ...`.
"""


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(ApplianceError, ValueError):
    """A setting is missing, unknown or has a bad value."""


class BoardError(ApplianceError, OSError):
    """The hardware (or the simulated hardware) cannot be opened or used."""


class AudioDeviceError(BoardError):
    """The audio device is missing, busy or cannot be set up."""


class ScenarioError(ApplianceError, ValueError):
    """A scenario file cannot be parsed or uses a verb that is not supported."""


class AudioFileError(ApplianceError, ValueError):
    """An audio file cannot be read or decoded."""


class VaultError(ApplianceError):
    """Sealed storage: keys, recordings, the catalog."""


class WebError(ApplianceError):
    """The web page: its certificate, its server, a request it refuses."""


class BackupError(ApplianceError):
    """An off-box copy cannot be made, checked or restored."""


class UpdateError(ApplianceError):
    """An update bundle is refused, or cannot be installed or rolled back."""
