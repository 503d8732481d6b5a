"""Training runs started, watched and cancelled through a running Dagster webserver with
Dagster's own GraphQL client (dagster-graphql), so a run the model server's admin API starts
is the run the UI shows. The client is imported on the first such request, so the server
itself starts without Dagster; nothing here imports the code location."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from thunder_dagster.times import utc_now


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


def _call(what: str, call):
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return call()
    except DagsterGraphQLClientError as error:
        raise RemoteError(f"{what}: Dagster refused: {error}") from error
    except Exception as error:  # the transport's own errors: connection refused, timeouts
        raise RemoteError(f"{what}: the webserver did not answer ({error})") from error


def start_training(url: str, agent_id: str, minutes: float, trials: int | None) -> RunState:
    """pipeline_job for the agent with `minutes` for the whole run, as `thunder train` runs it."""
    from thunder_dagster.training_plan import training_ops

    ops = training_ops(trials, minutes, started=utc_now())
    client = _client(url)
    run_id = _call(
        f"starting pipeline_job for {agent_id}",
        lambda: client.submit_job_execution(
            "pipeline_job",
            run_config={"ops": ops},
            tags={"dagster/partition": agent_id, "thunder/started_by": "admin-api"},
        ),
    )
    return RunState(run_id, run_status(url, run_id).status)


def start_op_job(
    url: str, job_name: str, op_name: str, config: dict, agent_id: str, partitioned: bool = False
) -> RunState:
    """A run of a one-step job for the agent, with the step's config, as the CLI runs it: the
    deployment jobs (rollback_job, undeploy_job, redeploy_job) name the agent in their config,
    an asset job (comparison_job) by its partition."""
    client = _client(url)
    tags = {"thunder/agent": agent_id, "thunder/started_by": "admin-api"}
    if partitioned:
        tags["dagster/partition"] = agent_id
    run_id = _call(
        f"starting {job_name} for {agent_id}",
        lambda: client.submit_job_execution(
            job_name, run_config={"ops": {op_name: {"config": config}}}, tags=tags
        ),
    )
    return RunState(run_id, run_status(url, run_id).status)


def run_status(url: str, run_id: str) -> RunState:
    client = _client(url)
    status = _call(f"run {run_id}", lambda: client.get_run_status(run_id))
    return RunState(run_id, status.value)


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


def cancel_run(url: str, run_id: str, force: bool = False) -> RunState:
    """Ask the run to stop (it ends CANCELED once its step lets go), or, with `force`, mark it
    CANCELED now and kill its process."""
    from dagster_graphql import DagsterGraphQLClientError

    client = _client(url)
    if not force:
        _call(f"cancelling run {run_id}", lambda: client.terminate_run(run_id))
        return run_status(url, run_id)

    def forced():
        answer = client._execute(FORCED_TERMINATION, {"runId": run_id})["terminateRun"]
        if answer["__typename"] != "TerminateRunSuccess":
            raise DagsterGraphQLClientError(answer["__typename"], answer.get("message", ""))

    _call(f"force-cancelling run {run_id}", forced)
    return run_status(url, run_id)
