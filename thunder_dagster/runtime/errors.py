"""Core errors a user can act on, turned into Dagster failures that show their message."""

import contextlib
from collections.abc import Iterator

import dagster as dg


@contextlib.contextmanager
def failing_on(*errors: type[Exception], retry: bool = False) -> Iterator[None]:
    """Inside the block, one of `errors` fails the step with its own message as the reason;
    `retry=False` (the default) keeps the step's RetryPolicy from trying the same input again."""
    try:
        yield
    except errors as error:
        raise dg.Failure(str(error), allow_retries=retry) from error
