"""Errors that carry a one-line message meant for an operator."""


class WgmeshError(Exception):
    """A failure with a message fit to print as the only line of output."""

    exit_code = 1

    def __str__(self) -> str:
        # Multi-line messages break log parsing and the "one line" contract.
        return " ".join(super().__str__().split())


class ConfigError(WgmeshError):
    """A configuration or data file does not match its schema."""

    exit_code = 2


class NotInitialisedError(WgmeshError):
    exit_code = 3


class AllocationError(WgmeshError):
    """No free interface name, address or port, or the name is taken."""


class RemoteError(WgmeshError):
    """The remote join-server refused (status set) or could not be reached
    (status None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
