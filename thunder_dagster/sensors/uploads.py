import json
import os

import dagster as dg

from thunder_dagster import settings
from thunder_dagster.documents.watch import UploadMemo, forget_agent, look_at_agent
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.jobs.ingest import ingest_job
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.partitions import agents

SENSOR_INTERVAL_SECONDS = int(settings.SENSOR_INTERVAL.value())
# The daemon evaluates sensors on a 5-second loop and skips a sensor whose last tick is younger
# than its minimum interval: at exactly 5 s, a pass that comes a few ms early is skipped and the
# gap doubles. A second of slack keeps the ticks on the loop's cadence.
MINIMUM_INTERVAL_SECONDS = max(1, SENSOR_INTERVAL_SECONDS - 1)


def ingest_run_key(agent_id: str, sequence: int, digest: str) -> str:
    """One key per change of an agent's content: a repeated tick never asks for the same run twice.

    The sequence number keeps content that comes back (A, then B, then A again) from reusing an
    old key, which Dagster would skip forever.
    """
    return f"{agent_id}:{sequence}:{digest[:16]}"


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def upload_sensor(context: dg.SensorEvaluationContext, thunder: ThunderHome) -> dg.SensorResult:
    """Starts an ingest run for each agent whose uploads arrived, changed or disappeared."""
    home = thunder.home()
    cursor: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
    memo = UploadMemo.load(home)
    known = set(context.instance.get_dynamic_partitions(agents.name))
    present: set[str] = set()
    run_requests: list[dg.RunRequest] = []
    new_agents: list[str] = []
    entries = (
        sorted(os.scandir(home.agents_dir), key=lambda e: e.name)
        if home.agents_dir.is_dir()
        else []
    )
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        agent_id = entry.name
        if not AGENT_ID_PATTERN.fullmatch(agent_id):
            context.log.warning(
                f"agents/{agent_id}: not an agent id (letters, digits, '-' and '_'); folder ignored"
            )
            continue
        present.add(agent_id)
        try:
            uploads = look_at_agent(home, agent_id, memo)
        except Exception as error:
            # One agent's trouble never stops the tick: a raising tick loses its cursor.
            context.log.exception(f"agents/{agent_id}: cannot look at uploads: {error}")
            continue
        for problem in uploads.errors:
            context.log.warning(f"agents/{agent_id}/{problem}")
        if not uploads.settled:
            context.log.info(
                f"agents/{agent_id}: waiting for {len(uploads.pending)} file(s) to settle"
            )
            continue
        state = cursor.get(agent_id)
        if state is None and uploads.files == 0:
            continue
        if state is not None and state["digest"] == uploads.digest:
            continue
        sequence = state["sequence"] + 1 if state else 1
        cursor[agent_id] = {"digest": uploads.digest, "sequence": sequence}
        if agent_id not in known:
            new_agents.append(agent_id)
        run_requests.append(
            dg.RunRequest(
                run_key=ingest_run_key(agent_id, sequence, uploads.digest),
                partition_key=agent_id,
                tags={"thunder/content": uploads.digest[:16], "thunder/files": str(uploads.files)},
            )
        )
    removed = sorted(set(cursor) - present)
    for agent_id in removed:
        cursor.pop(agent_id)
        forget_agent(memo, agent_id)
    memo.save(home)
    partition_requests = []
    if new_agents:
        partition_requests.append(agents.build_add_request(new_agents))
    gone = [agent_id for agent_id in removed if agent_id in known]
    if gone:
        partition_requests.append(agents.build_delete_request(gone))
    return dg.SensorResult(
        run_requests=run_requests,
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=partition_requests,
    )
