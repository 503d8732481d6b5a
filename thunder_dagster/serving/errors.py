"""The answering engine's refusals, each with a message that says what to do. The HTTP layer
maps each class to one status (serving/api/problems.py); the CLI prints the message."""


class ServingError(Exception):
    """A request the server cannot answer as asked."""


class UnknownAgent(ServingError):
    """No such agent, or nothing deployed or indexed for it."""


class Undeployed(ServingError):
    """The agent was undeployed by an operator."""


class WrongTask(ServingError):
    """The agent's task answers through another endpoint: `endpoint` names it."""

    def __init__(self, message: str, task: str, endpoint: str):
        super().__init__(message)
        self.task = task
        self.endpoint = endpoint


class Conflict(ServingError):
    """What was asked conflicts with the state of things (a test already running, ...)."""


class NotFound(ServingError):
    """The object acted on (a query, a test, a run) does not exist."""


class OverLimit(ServingError):
    """A value the document allows but this server's settings do not."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class WrongLabel(OverLimit):
    """A corrected label the answer's agent cannot take: it is not a classifier, or has no such
    label."""

    def __init__(self, message: str):
        super().__init__("label", message)


class Forbidden(ServingError):
    """The caller's key does not reach the object acted on."""


class StoreUnavailable(ServingError):
    """The query-log store is not open now (down, or still opening)."""


class TooLarge(ServingError):
    """An upload over the server's size limit (413)."""


class Busy(ServingError):
    """Too many requests are being answered or waiting: retry shortly (503, Retry-After)."""


class RateLimited(ServingError):
    """The caller is over its requests a minute: retry after `retry_after` seconds (429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Unreachable(ServingError):
    """A service the request needs (the Dagster webserver) did not answer."""


class BaseUnavailable(ServingError):
    """The instruct base cannot answer: not installed, or its graph refused."""
