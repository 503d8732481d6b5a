"""The run config `pipeline_job` and `training_job` take for a budget in minutes: how the
search and the final training share it. The CLI, the benchmarks, the model server's admin API
and launchpad users who want the split all build it here (no Dagster: the server uses it)."""

from datetime import datetime, timedelta

# Of a training budget in minutes, the search takes this share and the final training the rest.
SEARCH_SHARE = 0.3
# What a run needs after its final training: the ONNX export, its checks and the deployment
# (about 10 s for the default search's models on two cores).
WRAP_UP_SECONDS = 12.0


def training_ops(
    trials: int | None,
    minutes: float | None,
    epochs: int | None = None,
    parallel: int | None = None,
    started: datetime | None = None,
) -> dict:
    """Run config for the training assets: 30% of the minutes search, 70% train the best.

    The final training continues the best trial's model, so the search's best minutes are not
    lost; the other trials' are, and the short budgets leave most time to the winner.
    `parallel` search steps share the study (and each has the search's minutes). With
    `started` (when the run was asked for), the minutes are the whole run's: the search ends
    at its share of them and the final training early enough for the export and deployment,
    so the run's start-up, ingest and wrap-up come out of the budget instead of overrunning
    it. `epochs` caps each trial and the final training in work as well (each epoch its
    batches): with generous minutes, a busy machine takes longer instead of training less. The
    CLI, the benchmarks and launchpad users who want the split all build it here.
    """
    search, final = {}, {}
    if trials is not None:
        search["trials"] = trials
    if minutes is not None:
        search["minutes"] = round(minutes * SEARCH_SHARE, 3)
        final["minutes"] = round(minutes * (1 - SEARCH_SHARE), 3)
        if started is not None:
            training = minutes * 60 - WRAP_UP_SECONDS
            ends = (
                started + timedelta(seconds=training * SEARCH_SHARE),
                started + timedelta(seconds=training),
            )
            search["finish_by"], final["finish_by"] = (moment.isoformat() for moment in ends)
    if epochs is not None:
        search["epochs"] = final["epochs"] = epochs
    if parallel is not None:
        search["parallel"] = parallel
    return {"tpe_trials": {"config": search}, "keras_model": {"config": final}}


def classifier_ops(trials: int | None, minutes: float | None, started: datetime | None) -> dict:
    """Run config for `text_classifier`: its search and training end `minutes` after
    `started`, less the export's and deployment's share."""
    config: dict = {}
    if trials is not None:
        config["trials"] = trials
    if minutes is not None:
        config["minutes"] = minutes
        if started is not None:
            ends = started + timedelta(seconds=minutes * 60 - WRAP_UP_SECONDS)
            config["finish_by"] = ends.isoformat()
    return {"text_classifier": {"config": config}}


def adaptation_ops(trials: int | None, minutes: float | None) -> dict:
    """Run config for `agent_adapter`: its search has the minutes less the ingest's and the
    gates' share (the index is built first; the gates score the held-out examples twice)."""
    config: dict = {}
    if trials is not None:
        config["trials"] = trials
    if minutes is not None:
        config["minutes"] = round(minutes * (1 - SEARCH_SHARE), 3)
    return {"agent_adapter": {"config": config}}


def plan_for(
    task: str,
    trials: int | None,
    minutes: float | None,
    started: datetime | None,
    epochs: int | None = None,
) -> tuple[str, dict]:
    """The job that trains an agent of `task` from its uploads (the task registry's) and the
    ops config that gives it `trials` and `minutes` (and a text generator `epochs`): what
    `thunder train` and the admin API's training endpoint start."""
    from thunder_dagster.tasks.registry import task_kind

    kind = task_kind(task)
    if kind.model == "classifier":
        return kind.training_job, classifier_ops(trials, minutes, started)
    if kind.model == "instruct":
        return kind.training_job, adaptation_ops(trials, minutes)
    return kind.training_job, training_ops(trials, minutes, epochs=epochs, started=started)
