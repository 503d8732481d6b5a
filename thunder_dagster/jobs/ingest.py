import dagster as dg

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.groups("ingest", "retrieval"),
    description="An agent's uploads to documents, chunks and the training dataset CSV, and "
    "the chunks to their embeddings and the retrieval index.",
    # Steps already retry transient IO errors (RetryPolicy); a run whose process died
    # (killed worker, lost host) is launched again once by the daemon.
    tags={"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"},
)

base_job = dg.define_asset_job(
    name="base_job",
    selection=dg.AssetSelection.assets("instruct_base"),
    description="The instruct base's graph built and checked against its float reference: what "
    "chat and instruction agents answer with (a server builds it too when it is missing).",
)
