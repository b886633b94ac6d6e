"""The project's own error types: what users see instead of a stack trace from deep inside a library."""


class FinetuneError(Exception):
    """Base class: a problem the user can fix; the message says what is wrong and what to do."""


class ConfigError(FinetuneError):
    """Bad arguments or configuration file."""


class DataError(FinetuneError):
    """Bad input data; the message names the file and line (or row) where it can."""

    def __init__(self, message: str, source: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)
