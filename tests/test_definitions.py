import dagster as dg

from tests.imports import loaded_after
from thunder_dagster.definitions import defs


def test_the_graph_has_the_expected_shape():
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "documents",
        "chunks",
        "training_dataset",
        "chunk_embeddings",
        "retrieval_index",
        "tpe_trials",
        "keras_model",
        "onnx_model",
        "deployment",
        "query_log_stats",
        "training_triggers",
        "fine_tuned_model",
        "distilled_model",
        "ab_test_result",
        "champion_promotion",
        "query_drift",
        "operations",
        "model_comparison",
        "labelled_examples",
        "text_classifier",
        "classifier_deployment",
        "reward_model",
        "instruct_base",
        "agent_adapter",
    }
    export_checks = ("parity", "finite_outputs", "better_than_unigram", "step_parity")
    assert {f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys} == {
        "training_dataset:not_empty",
        "training_dataset:chunks_within_size",
        "training_dataset:unique_chunk_ids",
        "retrieval_index:retrieval_quality",
        "ab_test_result:challenger_significantly_better",
        "operations:cleanup_recent",
        "operations:training_runs_healthy",
        "text_classifier:parity",
        "text_classifier:finite_outputs",
        "text_classifier:better_than_majority",
        "reward_model:parity",
        "reward_model:finite_outputs",
        "reward_model:better_than_chance",
        "instruct_base:matches_the_float_reference",
        "agent_adapter:passes_the_gates",
        *(
            f"{asset}:{check}"
            for asset in ("onnx_model", "fine_tuned_model", "distilled_model")
            for check in export_checks
        ),
    }
    repository = defs.get_repository_def()
    # Dagster's implicit job over every asset (what the UI materializes from) is one of them.
    assert {job.name for job in repository.get_all_jobs()} == {
        "__ASSET_JOB",
        "ingest_job",
        "base_job",
        "training_job",
        "pipeline_job",
        "classifier_job",
        "classifier_pipeline_job",
        "rollback_job",
        "promote_job",
        "undeploy_job",
        "redeploy_job",
        "comparison_job",
        "prompt_training_job",
        "daily_analysis_job",
        "fine_tune_job",
        "distillation_job",
        "adaptation_job",
        "adaptation_pipeline_job",
        "relabel_job",
        "ab_test_job",
        "reward_job",
        "cleanup_job",
    }
    assert {sensor.name for sensor in repository.sensor_defs} == {
        "upload_sensor",
        "run_failure_sensor",
        "training_sensor",
        "classifier_sensor",
        "prompt_followup_sensor",
        "retraining_sensor",
        "alert_sensor",
    }
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    assert set(schedules) == {
        "daily_analysis_schedule",
        "ab_test_schedule",
        "reward_schedule",
        "cleanup_schedule",
    }
    assert schedules["daily_analysis_schedule"].cron_schedule == "0 2 * * *"
    assert schedules["cleanup_schedule"].cron_schedule == "0 * * * *"
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "documents": "ingest",
        "chunks": "ingest",
        "training_dataset": "ingest",
        "chunk_embeddings": "retrieval",
        "retrieval_index": "retrieval",
        "tpe_trials": "training",
        "keras_model": "training",
        "onnx_model": "deployment",
        "deployment": "deployment",
        "query_log_stats": "feedback",
        "training_triggers": "feedback",
        "query_drift": "feedback",
        "ab_test_result": "feedback",
        "champion_promotion": "feedback",
        "fine_tuned_model": "retraining",
        "distilled_model": "retraining",
        "operations": "monitoring",
        "model_comparison": "comparisons",
        "labelled_examples": "ingest",
        "text_classifier": "classification",
        "classifier_deployment": "classification",
        "reward_model": "rewards",
        "instruct_base": "instruct",
        "agent_adapter": "adaptation",
    }
    assert graph.get(dg.AssetKey("tpe_trials")).pools == {"training"}


def test_each_kind_of_work_is_retried_as_its_seed_says():
    repository = defs.get_repository_def()

    def step_retries(asset: str) -> dg.RetryPolicy | None:
        return defs.get_assets_def(asset).op.retry_policy

    # Seed 000: the training an upload starts has three attempts, its steps and its run.
    for asset in ("keras_model", "text_classifier"):
        assert step_retries(asset).max_retries == 2, asset
    search = repository.get_job("pipeline_job").graph.node_named("tpe_trials")
    assert search.definition.node_named("search_trials").definition.retry_policy.max_retries == 2
    assert repository.get_job("pipeline_job").tags["dagster/max_retries"] == "1"
    # Seed 004: fine-tune and distillation get one attempt, neither the step nor the run again.
    for asset, job in (
        ("fine_tuned_model", "fine_tune_job"),
        ("distilled_model", "distillation_job"),
    ):
        assert step_retries(asset) is None, asset
        assert "dagster/max_retries" not in repository.get_job(job).tags, job
    # Seed 004: cleanup is tried again once, 30 minutes on.
    cleanup = repository.get_job("cleanup_job").graph.node_named("clean_up").definition
    assert (cleanup.retry_policy.max_retries, cleanup.retry_policy.delay) == (1, 1800)


def test_importing_the_definitions_never_loads_the_heavy_libraries():
    # The import time itself is measured by bench/import_time.py; what keeps it short is that
    # none of these load with the code location.
    heavy = ("tensorflow", "keras", "pymupdf", "docx", "mlflow", "optuna", "onnx", "onnxruntime")
    also = ("tf2onnx", "pandas", "numpy", "scipy", "sqlalchemy", "dagster_celery")
    assert loaded_after(["thunder_dagster.definitions"], (*heavy, *also)) == []
