"""Where alerts go: Apprise URLs (email, Slack, Teams, webhooks and the rest, one URL each),
every channel tried on its own thread with retries and backoff, so a channel that fails or
hangs never holds the others back; each delivery is reported for the alert log."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class ChannelError(ValueError):
    """A channel URL Apprise cannot use: the message names it (without its secrets)."""


@dataclass(frozen=True)
class Outcome:
    channel: str  # the URL with its secrets masked
    attempts: int
    delivered: bool
    error: str | None


def _secret_free(url: str) -> str:
    """A URL Apprise cannot parse, named by its scheme and length alone: in many of its forms
    the part where a host would be is the secret (a Telegram bot's token, a Slack token)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return f"a URL without a scheme ({len(url)} characters)"
    return f"{scheme[:20]}://... ({len(rest)} characters after the scheme)"


class Channel:
    """One notification URL, checked when it is made."""

    def __init__(self, url: str):
        import apprise

        self.url = url.strip()
        self._apprise = apprise.Apprise()
        if not self._apprise.add(self.url):
            raise ChannelError(
                f"alert channel {_secret_free(self.url)}: not a notification URL Apprise "
                "knows (see https://github.com/caronc/apprise/wiki for the forms)"
            )
        # Apprise's own form with passwords and tokens masked, without the query's options.
        self.name = self._apprise[0].url(privacy=True).split("?", 1)[0]

    def send(self, title: str, body: str) -> str | None:
        """None when delivered; otherwise what Apprise logged about the failure."""
        import apprise

        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            delivered = self._apprise.notify(title=title, body=body)
        if delivered:
            return None
        lines = captured.getvalue().strip().splitlines()
        return lines[-1][:500] if lines else "not delivered (no reason given)"


def parse_channels(urls: str) -> list[Channel]:
    """Channels from a list of URLs separated by whitespace or commas."""
    return [Channel(url) for url in urls.replace(",", " ").split() if url]


def deliver(
    channels: list[Channel],
    title: str,
    body: str,
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    deadline_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Send to every channel at once, each retried up to `attempts` times with the wait
    doubling from `backoff_seconds`; the outcomes in the channels' order. A channel still
    trying after `deadline_seconds` is reported as not delivered (its thread finishes on its
    own), so a hanging server cannot hold the caller."""
    outcomes: list[Outcome | None] = [None] * len(channels)

    def one(number: int, channel: Channel) -> None:
        error = None
        for attempt in range(1, attempts + 1):
            try:
                error = channel.send(title, body)
            except Exception as failure:  # a plugin's own error is this channel's alone
                error = f"{type(failure).__name__}: {failure}"
            if error is None:
                outcomes[number] = Outcome(channel.name, attempt, True, None)
                return
            log.warning(f"alert to {channel.name}, attempt {attempt}/{attempts}: {error}")
            if attempt < attempts:
                sleep(backoff_seconds * 2 ** (attempt - 1))
        outcomes[number] = Outcome(channel.name, attempts, False, error)

    threads = [
        threading.Thread(target=one, args=(n, c), daemon=True, name=f"alert-{n}")
        for n, c in enumerate(channels)
    ]
    for thread in threads:
        thread.start()
    ends = time.monotonic() + deadline_seconds
    for thread in threads:
        thread.join(max(0.0, ends - time.monotonic()))
    return [
        outcome
        or Outcome(
            channel.name, attempts, False, f"no answer within {deadline_seconds:g} s; still trying"
        )
        for outcome, channel in zip(list(outcomes), channels, strict=True)
    ]
