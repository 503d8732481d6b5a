"""Runs started, watched and cancelled through a running Dagster webserver with Dagster's own
GraphQL client (dagster-graphql), so a run the model server's admin API (or the CLI, given a
webserver) starts is the run the UI shows. The client is imported on the first call, so the
server itself starts without Dagster; nothing here imports the code location."""

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit


class RemoteError(RuntimeError):
    """The webserver could not be reached or refused: the message says which and why."""


@dataclass(frozen=True)
class RunState:
    run_id: str
    status: str  # Dagster's run status: QUEUED, STARTING, STARTED, CANCELING, SUCCESS, ...


def _client(url: str):
    from dagster_graphql import DagsterGraphQLClient

    parts = urlsplit(url)
    if not parts.hostname:
        raise RemoteError(f"THUNDER_DAGSTER_URL {url!r}: not a URL like http://host:3000")
    return DagsterGraphQLClient(
        parts.hostname,
        port_number=parts.port,
        use_https=parts.scheme == "https",
        path_prefix=parts.path.rstrip("/"),
        timeout=30,
    )


def _answer(client, query: str, variables: dict, field: str, *accepted: str) -> dict:
    """The `field` of a GraphQL answer whose type is one of `accepted`; Dagster's refusal (a
    PythonError, a not-found, an unauthorised) as the client's error otherwise."""
    from dagster_graphql import DagsterGraphQLClientError

    answer = client._execute(query, variables)[field]
    if answer["__typename"] not in accepted:
        raise DagsterGraphQLClientError(answer["__typename"], answer.get("message", ""))
    return answer


def _call(what: str, call):
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return call()
    except DagsterGraphQLClientError as error:
        raise RemoteError(f"{what}: Dagster refused: {error}") from error
    except Exception as error:  # the transport's own errors: connection refused, timeouts
        raise RemoteError(f"{what}: the webserver did not answer ({error})") from error


# Dagster's terminateRun with the policy the UI's "force termination" uses: the run is marked
# CANCELED at once and its process killed (the safe policy asks the process to stop).
FORCED_TERMINATION = """
mutation ThunderForceTerminate($runId: String!) {
  terminateRun(runId: $runId, terminatePolicy: MARK_AS_CANCELED_IMMEDIATELY) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""


# Dagster's runOrError with the run's tags: whose agent a run is (its partition, or the tag the
# deployment jobs carry).
RUN_TAGS = """
query ThunderRunTags($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { tags { key value } }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""
AGENT_TAGS = ("dagster/partition", "thunder/agent")
# The code location's repositories, and a key added to a dynamic partition set: a run for an
# agent the instance has not seen yet needs its partition first.
REPOSITORIES = """
query ThunderRepositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } } }
    ... on PythonError { message }
  }
}
"""
ADD_PARTITION = """
mutation ThunderAddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""
AGENT_PARTITIONS = "agents"  # runtime/partitions.py's dynamic partitions of the agents
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class RunLauncher(Protocol):
    """Where runs start: submit a job for an agent with its ops config and tags, read a run's
    status and agent, cancel it."""

    def submit(self, job: str, agent_id: str, ops: dict, tags: dict[str, str]) -> RunState: ...

    def add_agent(self, agent_id: str) -> None: ...

    def status(self, run_id: str) -> RunState: ...

    def agent_of(self, run_id: str) -> str | None: ...

    def cancel(self, run_id: str, force: bool = False) -> RunState: ...


@dataclass(frozen=True)
class WebserverLauncher:
    """A RunLauncher over the Dagster webserver at `url`. Every run carries its agent as the
    `thunder/agent` tag (and partitioned jobs as their partition), so the UI filters by it."""

    url: str

    def submit(self, job: str, agent_id: str, ops: dict, tags: dict[str, str]) -> RunState:
        client = _client(self.url)
        tags = {"thunder/agent": agent_id, **tags}
        if tags.get("dagster/partition") == agent_id:
            self.add_agent(agent_id)
        run_id = _call(
            f"starting {job} for {agent_id}",
            lambda: client.submit_job_execution(job, run_config={"ops": ops}, tags=tags),
        )
        return self.status(run_id)

    def add_agent(self, agent_id: str) -> None:
        """The agent's partition on the instance, added unless it is there."""
        client = _client(self.url)

        def add():
            found = _answer(client, REPOSITORIES, {}, "repositoriesOrError", "RepositoryConnection")
            if not found["nodes"]:
                from dagster_graphql import DagsterGraphQLClientError

                raise DagsterGraphQLClientError("the webserver serves no repository")
            (repository, *_) = found["nodes"]
            selector = {
                "repositoryLocationName": repository["location"]["name"],
                "repositoryName": repository["name"],
            }
            variables = {"selector": selector, "name": AGENT_PARTITIONS, "key": agent_id}
            ok = ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError")
            _answer(client, ADD_PARTITION, variables, "addDynamicPartition", *ok)

        _call(f"adding agent {agent_id}'s partition", add)

    def status(self, run_id: str) -> RunState:
        client = _client(self.url)
        status = _call(f"run {run_id}", lambda: client.get_run_status(run_id))
        return RunState(run_id, status.value)

    def agent_of(self, run_id: str) -> str | None:
        """The agent the run's tags name; None when they name none. RemoteError when Dagster
        has no such run or does not answer."""
        client = _client(self.url)

        def tags():
            run = _answer(client, RUN_TAGS, {"runId": run_id}, "runOrError", "Run")
            return {tag["key"]: tag["value"] for tag in run["tags"]}

        found = _call(f"run {run_id}", tags)
        return next((found[key] for key in AGENT_TAGS if key in found), None)

    def cancel(self, run_id: str, force: bool = False) -> RunState:
        """Ask the run to stop (it ends CANCELED once its step lets go), or, with `force`, mark
        it CANCELED now and kill its process."""
        client = _client(self.url)
        if not force:
            _call(f"cancelling run {run_id}", lambda: client.terminate_run(run_id))
            return self.status(run_id)
        _call(
            f"force-cancelling run {run_id}",
            lambda: _answer(
                client, FORCED_TERMINATION, {"runId": run_id}, "terminateRun", "TerminateRunSuccess"
            ),
        )
        return self.status(run_id)
