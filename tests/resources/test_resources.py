"""The resources over the outside world: one home for all of them, their URLs from their
fields first and then from settings, and passwords kept out of what is shown."""

import pytest

from tests.factories import resources


def test_every_resource_keeps_its_state_under_the_one_home(home, monkeypatch):
    for name in ("THUNDER_OPTUNA_URL", "THUNDER_QUERY_DB_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    built = resources(home)
    assert built["thunder"].home() == home
    assert built["tuning"].storage_url() == f"sqlite:///{home.optuna_db}"
    assert built["tracking"].tracker(print).tracking_uri == home.mlflow_db_url
    with built["queries"].open() as store:
        assert store.engine.url.database == str(home.queries_db)
    assert home.queries_db.is_file()


def test_a_field_wins_over_the_environment_and_the_environment_over_the_default(home, monkeypatch):
    monkeypatch.setenv("THUNDER_OPTUNA_URL", "postgresql://thunder:secret@db.example/optuna")
    built = resources(home)
    assert built["tuning"].storage_url().startswith("postgresql://thunder:secret@")
    assert built["tuning"].display_url() == "postgresql://thunder:***@db.example/optuna"
    pinned = type(built["tuning"])(thunder=built["thunder"], url="sqlite:///elsewhere.db")
    assert pinned.storage_url() == "sqlite:///elsewhere.db"


def test_the_query_log_store_closes_when_its_block_ends(home):
    with resources(home)["queries"].open() as store:
        pool = store.engine.pool
        with store.engine.connect():
            assert pool.checkedout() == 1
    # Closing disposes of the engine: its pool, connections and all, is replaced.
    assert store.engine.pool is not pool


@pytest.mark.parametrize("variable", ["THUNDER_QUERY_DB_URL", "MLFLOW_TRACKING_URI"])
def test_the_production_urls_come_from_settings(home, monkeypatch, variable):
    monkeypatch.setenv(variable, f"sqlite:///{home.root / 'elsewhere.db'}")
    built = resources(home)
    if variable == "MLFLOW_TRACKING_URI":
        assert built["tracking"].tracker(print).tracking_uri.endswith("elsewhere.db")
    else:
        with built["queries"].open() as store:
            assert store.engine.url.database.endswith("elsewhere.db")
