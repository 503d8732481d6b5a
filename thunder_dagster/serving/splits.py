"""Each agent's A/B split, from its A/B test in the query-log store (re-read every few
seconds): the share of users its challenger answers. A challenger without a test gets the
server's default share; one whose test ended answers nobody. Without the store the splits
last read stay; before any were read, every challenger gets the default."""

from dataclasses import dataclass

from thunder_dagster.serving.access import StoreSnapshot


@dataclass(frozen=True)
class BestOfPolicy:
    """A running test of the champion answering best-of-n: the version its answers are logged
    as, n, and the share of users it answers."""

    version: str
    best_of: int
    split: float


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

    def best_of_test(self, agent_id: str, champion_version: str) -> BestOfPolicy | None:
        """The agent's running best-of-n test of its champion; None without one."""
        from thunder_dagster.feedback.experiments import best_of_in

        test = (self.snapshot.value() or {}).get(agent_id)
        if test is None or not test.running:
            return None
        policy = best_of_in(test.challenger_version)
        if policy is None or policy[0] != champion_version:
            return None
        return BestOfPolicy(test.challenger_version, policy[1], test.split)
