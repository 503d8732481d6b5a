"""A search's Optuna storage: an RDBStorage whose trials send heartbeats and whose pool tests
its connections, and the trials a process ran that the storage lost track of."""

import time
import warnings

import optuna

from thunder_dagster.modeling.search import SearchSettings

LOST_ATTR = "lost"


def open_storage(url: str, settings: SearchSettings) -> optuna.storages.RDBStorage:
    """RDBStorage with heartbeats: a trial whose worker died goes stale, fails and is retried."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                # A server restarted under a search leaves dead connections in the pool: each
                # is tested before use and replaced, instead of failing the trial that drew it.
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else {},
                heartbeat_interval=settings.heartbeat_seconds,
                grace_period=settings.stale_after_seconds,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=2
                ),
            )
        except (IntegrityError, ProgrammingError):
            # Workers starting together on a new database race to create Optuna's tables;
            # the loser finds them made a moment later.
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def release_lost(storage: optuna.storages.BaseStorage, study: optuna.Study, ids: list[int]):
    """Fail and queue again the trials this process ran that the storage still holds as
    running. Nothing runs them now: their end was not recorded, the database unreachable as
    they ended (a restart), and one whose heartbeat thread died with the connection would
    never go stale, holding its place in the budget for ever."""
    for trial_id in ids:
        trial = storage.get_trial(trial_id)
        if trial.state != optuna.trial.TrialState.RUNNING:
            continue
        storage.set_trial_user_attr(trial_id, LOST_ATTR, "its end was not recorded; run again")
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
