"""Each agent's A/B split, from its A/B test in the query-log store (re-read every few
seconds): the share of users its challenger answers. A challenger without a test gets the
server's default share; one whose test ended answers nobody. Without the store the splits
last read stay; before any were read, every challenger gets the default."""

from thunder_dagster.serving.access import StoreSnapshot


def _latest_tests(engine) -> dict:
    from thunder_dagster.feedback.experiments import AbTestStore

    return AbTestStore(engine).latest_per_agent()


class SplitCache:
    def __init__(self, store_of, default_share: float, refresh_seconds: float = 5.0):
        self.default_share = default_share
        self.snapshot = StoreSnapshot(store_of, _latest_tests, refresh_seconds)

    def share(self, agent_id: str, challenger_version: str) -> float:
        from thunder_dagster.feedback.experiments import challenger_share

        latest = self.snapshot.value()
        if latest is None:
            return self.default_share
        return challenger_share(latest, agent_id, challenger_version, self.default_share)
