import json
import subprocess
import sys

from thunder_dagster.definitions import defs


def test_the_graph_has_the_expected_shape():
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "documents",
        "chunks",
        "training_dataset",
    }
    assert {f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys} == {
        "training_dataset:not_empty",
        "training_dataset:chunks_within_size",
        "training_dataset:unique_chunk_ids",
    }
    repository = defs.get_repository_def()
    assert {job.name for job in repository.get_all_jobs()} >= {"ingest_job"}
    assert {sensor.name for sensor in repository.sensor_defs} == {
        "upload_sensor",
        "failure_recorder",
    }
    assert {schedule.name for schedule in repository.schedule_defs} == set()
    assert graph.get(graph.get_all_asset_keys().pop()).group_name == "ingest"


def test_importing_the_definitions_is_quick_and_never_loads_tensorflow():
    probe = (
        "import json, sys, time; t = time.perf_counter(); import thunder_dagster.definitions; "
        "print(json.dumps({'seconds': time.perf_counter() - t, "
        "'heavy': sorted(m for m in ('tensorflow', 'keras', 'pymupdf', 'docx', 'mlflow') "
        "if m in sys.modules)}))"
    )
    # Warm the file-system cache once, then measure the second import.
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    measured = json.loads(out.stdout)
    assert measured["heavy"] == []
    assert measured["seconds"] < 1.5, measured
