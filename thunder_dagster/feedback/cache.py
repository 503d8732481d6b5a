"""The response cache of greedy answers, in the query-log store: an answer per agent, model
version and prompt, kept until it expires (the hourly cleanup purges the expired)."""

from datetime import datetime, timedelta

from sqlalchemy import delete

from thunder_dagster.feedback.records import cache_key
from thunder_dagster.feedback.schema import CachedResponse
from thunder_dagster.times import as_utc, utc_now


class ResponseCache:
    """QueryStore's cache methods, on its `sessions`."""

    def cached_response(self, key: str, now: datetime | None = None) -> CachedResponse | None:
        with self.sessions() as session:
            entry = session.get(CachedResponse, key)
        if entry is None or entry.expires_at <= as_utc(now or utc_now()):
            return None
        return entry

    def cache_response(
        self,
        agent_id: str,
        model_version: str,
        prompt_key: str,
        response: str,
        confidence: float,
        ttl: timedelta,
    ) -> str:
        key = cache_key(agent_id, model_version, prompt_key)
        with self.sessions.begin() as session:
            session.merge(
                CachedResponse(
                    key=key,
                    agent_id=agent_id,
                    model_version=model_version,
                    response=response,
                    confidence=confidence,
                    expires_at=utc_now() + ttl,
                )
            )
        return key

    def purge_expired_cache(self, now: datetime | None = None) -> int:
        with self.sessions.begin() as session:
            result = session.execute(
                delete(CachedResponse).where(CachedResponse.expires_at <= (now or utc_now()))
            )
            return result.rowcount
