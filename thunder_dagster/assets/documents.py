import dagster as dg
from pydantic import Field

from thunder_dagster.documents.datasets import COLUMNS
from thunder_dagster.documents.extraction import ExtractionLimits
from thunder_dagster.documents.ingest import (
    DocumentSet,
    ingest_agent,
    iter_chunk_rows,
    write_ingest_report,
)
from thunder_dagster.documents.isolation import WorkerLimits
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import IO_RETRY
from thunder_dagster.tasks.agents import AgentSettingsError, read_task

MB = 1024 * 1024


class IngestConfig(dg.Config):
    """Limits past which an upload is rejected rather than parsed."""

    max_file_mb: float = Field(default=50, description="Largest upload parsed, in MB.")
    max_docx_uncompressed_mb: float = Field(
        default=200, description="Largest decompressed size of a docx, in MB (zip-bomb guard)."
    )
    max_pages: int = Field(default=2000, description="Most pages of a PDF that are parsed.")
    parse_timeout_seconds: float = Field(
        default=60, description="Time one file may take to parse before it is rejected."
    )
    parse_memory_mb: int = Field(
        default=2048, description="Address space of a parser process; past it the file is rejected."
    )
    parse_workers: int = Field(default=2, description="Parser processes working in parallel.")

    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits(
            max_file_bytes=int(self.max_file_mb * MB),
            max_docx_uncompressed_bytes=int(self.max_docx_uncompressed_mb * MB),
            max_pages=self.max_pages,
        )

    def worker_limits(self) -> WorkerLimits:
        return WorkerLimits(
            workers=self.parse_workers,
            timeout_seconds=self.parse_timeout_seconds,
            memory_mb=self.parse_memory_mb,
        )


def _problem_table(documents: DocumentSet) -> str:
    rows = [doc for doc in documents.documents if doc.status != "ok"]
    if not rows:
        return "Every file yielded text."
    lines = ["| file | status | reason |", "| --- | --- | --- |"]
    lines += [f"| {doc.rel_path} | {doc.status} | {doc.reason} |" for doc in rows]
    return "\n".join(lines)


@dg.asset(
    group_name="ingest",
    kinds={"python", "pdf"},
    partitions_def=agents,
    retry_policy=IO_RETRY,
)
def documents(
    context: dg.AssetExecutionContext, config: IngestConfig, thunder: ThunderHome
) -> dg.Output[DocumentSet]:
    """Every upload of the agent (txt, pdf, docx) extracted to text, or rejected with a reason;
    labelled examples (CSV or JSONL) read by row, prompt and response pairs laid out as text
    in the agent's task's format.

    Reads $THUNDER_HOME/agents/<agent>/{work_product,communication,reference}/ and writes
    agents/<agent>/processed/ingest_report.json.
    """
    home = thunder.home()
    agent_id = context.partition_key
    with failing_on(AgentSettingsError):
        task = read_task(home.agent_dir(agent_id))
    result = ingest_agent(
        home,
        agent_id,
        limits=config.extraction_limits(),
        workers=config.worker_limits(),
        log=context.log.info,
        task=task,
    )
    report_path = home.ingest_report_path(agent_id)
    write_ingest_report(report_path, result)
    for document in result.documents:
        if document.status in ("rejected", "skipped"):
            context.log.warning(f"{document.rel_path}: {document.status}: {document.reason}")
    counts = result.counts()
    context.log.info(
        f"{len(result.documents)} files: "
        + ", ".join(f"{count} {status}" for status, count in counts.items())
    )
    return dg.Output(
        result,
        metadata={
            "files": len(result.documents),
            **{status: count for status, count in counts.items()},
            "extracted_from_cache": sum(doc.cached for doc in result.documents),
            "characters": sum(doc.chars for doc in result.ok),
            "task": task,
            "labelled_rows_left_out": sum(len(doc.row_problems) for doc in result.documents),
            "ingest_report": dg.MetadataValue.path(str(report_path)),
            "problems": dg.MetadataValue.md(_problem_table(result)),
        },
    )


@dg.asset(group_name="ingest", kinds={"pandas"}, partitions_def=agents)
def chunks(documents: DocumentSet) -> dg.Output:
    """Each document's text cut into 512-character chunks with 50 characters of overlap."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(iter_chunk_rows(documents)), columns=list(COLUMNS))
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "documents": frame["document_id"].nunique(),
            "longest_chunk": int(frame["text"].str.len().max()) if len(frame) else 0,
        },
    )
