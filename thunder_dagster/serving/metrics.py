"""The model server's Prometheus metrics, with prometheus_client, on a registry of its own.

Label values are bounded: an agent label is an agent the server holds a model or an index for
(anything else is counted as "other"), an endpoint label is a route's template, never a path,
and no user id, prompt or query is ever a label. What the pools and the query-log writer know
(deployed versions, spool depth) is read when Prometheus scrapes, not copied on every change.
"""

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

OTHER_AGENT = "other"
ROLES = ("champion", "challenger", "teacher")
# Seconds: a cached answer is a millisecond, a long grounded generation a few seconds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        known = {"registry": self.registry}
        self.requests = Counter(
            "thunder_requests",
            "HTTP requests answered, by route, agent and status code",
            ["endpoint", "agent", "status"],
            **known,
        )
        self.request_seconds = Histogram(
            "thunder_request_seconds",
            "Time from a request's arrival to its answer, by route",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            **known,
        )
        self.model_seconds = Histogram(
            "thunder_model_seconds",
            "Time a model spent generating one answer",
            ["agent", "variant"],
            buckets=LATENCY_BUCKETS,
            **known,
        )
        self.characters = Counter(
            "thunder_generated_characters",
            "Characters the models generated",
            ["agent", "variant"],
            **known,
        )
        self.confidence = Histogram(
            "thunder_confidence",
            "The local model's confidence in each answer (the daily rules' input)",
            ["agent", "variant"],
            buckets=CONFIDENCE_BUCKETS,
            **known,
        )
        self.fallbacks = Counter(
            "thunder_teacher_fallbacks",
            "Answers the teacher gave because the local model's confidence was low",
            ["agent"],
            **known,
        )
        self.teacher_calls = Counter(
            "thunder_teacher_calls",
            "Calls of the external teacher (API B): answered, failed, or not made while its "
            "circuit was open",
            ["outcome"],
            **known,
        )
        self.reloads = Counter(
            "thunder_reloads",
            "Models and indexes the watchers loaded or refused",
            ["agent", "role", "outcome"],
            **known,
        )
        self.search_seconds = Histogram(
            "thunder_search_seconds",
            "Time to embed a query and search an agent's index",
            ["agent"],
            buckets=LATENCY_BUCKETS,
            **known,
        )
        self.audit_dropped = Counter(
            "thunder_audit_dropped",
            "Refused requests (401, 403) not written to the audit log because their client "
            "passed its budget of audited refusals a minute",
            **known,
        )
        self._agents: Callable[[], Iterable[str]] = lambda: ()
        self._state: StateCollector | None = None

    def agent_label(self, agent_id: str | None) -> str:
        return agent_id if agent_id in set(self._agents()) else OTHER_AGENT

    def watch(self, agents: Callable[[], Iterable[str]], state: "StateCollector") -> None:
        """The agents a label may name, and what is read at each scrape (an app started
        again, as a test harness may, reads its new pools)."""
        self._agents = agents
        if self._state is not None:
            self.registry.unregister(self._state)
        self.registry.register(state)
        self._state = state


class StateCollector(Collector):
    """Deployed versions and the query-log writer's backlog, as they are at scrape time."""

    def __init__(self, deployed: Callable[[], dict], writer) -> None:
        self.deployed = deployed  # agent -> {role: version or None}
        self.writer = writer

    def collect(self):
        info = InfoMetricFamily(
            "thunder_deployed_model",
            "The model version serving each agent's role",
            labels=["agent", "role"],
        )
        for agent, roles in sorted(self.deployed().items()):
            for role, version in sorted(roles.items()):
                if role in ROLES and isinstance(version, str):
                    info.add_metric([agent, role], {"version": version})
        yield info
        spool = GaugeMetricFamily(
            "thunder_spool_rows",
            "Rows waiting in the spool for the query-log store",
            labels=["kind"],
        )
        spool.add_metric(["answer"], self.writer.spool.queries)
        spool.add_metric(["rating"], self.writer.spool.ratings)
        yield spool
        yield GaugeMetricFamily(
            "thunder_spool_rejected_lines",
            "Spool lines that could not be read and were set aside",
            value=self.writer.spool.rejected_lines,
        )
        yield GaugeMetricFamily(
            "thunder_query_log_lost_rows",
            "Rows neither the query-log store nor the spool could take",
            value=self.writer.lost,
        )
