import dagster as dg

from thunder_dagster.documents.datasets import (
    COLUMNS,
    TrainingDataset,
    check_training_dataset,
    read_training_dataset,
    write_training_dataset,
)
from thunder_dagster.home import CATEGORIES
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import check_results
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import IO_RETRY
from thunder_dagster.tasks.agents import AgentSettingsError, read_task
from thunder_dagster.tasks.registry import task_kind

DATASET_CHECKS = ("not_empty", "chunks_within_size", "unique_chunk_ids")
PREVIEW_ROWS = 5


PREVIEW_COLUMNS = ("filename", "category", "chunk_index", "start", "end", "text")


def _preview(path: str) -> dg.TableMetadataValue:
    frame = read_training_dataset(path).head(PREVIEW_ROWS)
    records = [
        dg.TableRecord(
            {
                **{name: str(row[name]) for name in PREVIEW_COLUMNS[:-1]},
                "text": " ".join(row["text"].split())[:80],
            }
        )
        for _, row in frame.iterrows()
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(name, "str") for name in PREVIEW_COLUMNS])
    return dg.MetadataValue.table(records=records, schema=schema)


@dg.asset(
    group_name="ingest",
    kinds={"pandas", "csv"},
    partitions_def=agents,
    retry_policy=IO_RETRY,
    check_specs=[
        dg.AssetCheckSpec(name, asset="training_dataset", blocking=True) for name in DATASET_CHECKS
    ],
)
def training_dataset(context: dg.AssetExecutionContext, chunks, thunder: ThunderHome):
    """The agent's chunks as a CSV: agents/<agent>/processed/training_data_<UTC timestamp>.csv.

    Versioned by content: the same chunks give the same version and no new file.
    """
    home = thunder.home()
    agent_id = context.partition_key
    dataset: TrainingDataset = write_training_dataset(
        agent_id,
        chunks[list(COLUMNS)].itertuples(index=False, name=None),
        home.processed_dir(agent_id),
    )
    context.log.info(f"dataset {dataset.version}: {dataset.rows} chunks at {dataset.path}")
    categories = {category: dataset.categories.get(category, 0) for category in CATEGORIES}
    yield dg.Output(
        dataset,
        metadata={
            "dagster/row_count": dataset.rows,
            "rows": dataset.rows,
            "documents": dataset.documents,
            "characters": dataset.characters,
            "version": dataset.version,
            "categories": dg.MetadataValue.json(categories),
            "csv_path": dg.MetadataValue.path(dataset.path),
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        name, "int" if name in ("chunk_index", "start", "end") else "str"
                    )
                    for name in COLUMNS
                ]
            ),
            "preview": _preview(dataset.path),
        },
    )
    with failing_on(AgentSettingsError):
        text_needed = not task_kind(read_task(home.agent_dir(agent_id))).labelled
    yield from check_results(check_training_dataset(dataset.path, text_needed=text_needed))
