"""What the pipeline commands print after a run: the ingest report and the deployed model, read
from their typed records (the ingest report, the deployment pointer, the model card)."""

import click

from thunder_dagster.home import Home


def print_ingest_summary(home: Home, agent_id: str) -> None:
    from thunder_dagster.documents.datasets import latest_dataset
    from thunder_dagster.documents.ingest import read_ingest_report

    report = read_ingest_report(home.ingest_report_path(agent_id))
    if report is None:
        return
    summary = ", ".join(
        f"{count} {status}"
        for status, count in report.summary.items()
        if count or status != "labelled"  # an agent without labelled uploads reads as before
    )
    click.echo(f"agent {agent_id}: {len(report.files)} files: {summary}")
    for entry in report.files:
        if entry.status == "ok":
            detail = f"{entry.chars} chars, {entry.chunks} chunks"
        elif entry.status == "labelled":
            detail = f"{entry.examples} labelled examples" + "".join(
                f"; line {line}: {reason}" for line, reason in entry.bad_rows[:5]
            )
        else:
            detail = entry.reason
        click.echo(f"  {entry.status:8} {entry.path}  ({detail})")
    click.echo(f"report: {home.ingest_report_path(agent_id)}")
    dataset = latest_dataset(home.processed_dir(agent_id))
    if dataset is not None:
        click.echo(f"dataset {dataset.version}: {dataset.rows} chunks in {dataset.path}")


def print_training_summary(home: Home, agent_id: str, prompt: str | None = None) -> None:
    from thunder_dagster.deployments.pointers import read_pointer
    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.tasks.registry import task_kind

    if print_adapter_summary(home, agent_id):
        return
    deployment = read_pointer(home.deployments_dir(agent_id))
    if deployment is None:
        click.echo(f"agent {agent_id}: nothing deployed")
        return
    card = ModelCard.read(deployment.model_dir)
    split, loss = card.reported_loss()
    if task_kind(card.task).labelled and card.classification:
        measured = card.classification
        click.echo(
            f"deployed {agent_id} {deployment.version} ({card.task} over {len(card.labels)} "
            f"labels, registry version {deployment.registry_version}): test accuracy "
            f"{measured.accuracy:.3f}, macro F1 {measured.macro_f1:.3f} (always "
            f"{measured.majority_label!r}: {measured.majority_accuracy:.3f} / "
            f"{measured.majority_macro_f1:.3f})"
        )
    else:
        click.echo(
            f"deployed {agent_id} {deployment.version} ({deployment.family}, registry version "
            f"{deployment.registry_version}): {split} loss {loss:.4f} "
            f"nats/char, unigram baseline {card.metrics.unigram_loss:.4f}"
        )
    click.echo(f"  model: {deployment.onnx_path}")
    if card.mlflow_run_id:
        click.echo(
            f"  MLflow run {card.mlflow_run_id} in {home.mlflow_dir} "
            f"(mlflow ui --backend-store-uri {home.mlflow_db_url})"
        )
    if prompt is not None:
        from thunder_dagster.serving.generation import generate
        from thunder_dagster.serving.loading import load_deployed

        sample = generate(load_deployed(home.deployments_dir(agent_id)), prompt, 200, 0.8, seed=0)
        click.echo(f"  sample after {prompt!r}:\n{prompt}{sample.text}")


def print_adapter_summary(home: Home, agent_id: str) -> bool:
    """A chat or instruction agent's adapters: what serves and what the gates measured; False
    for an agent of another task."""
    import json
    from pathlib import Path

    from thunder_dagster.adapters.releases import GATES_NAME, adapter_dir
    from thunder_dagster.deployments.pointers import read_pointer
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.tasks.registry import task_kind

    try:
        if task_kind(read_task(home.agent_dir(agent_id))).model != "instruct":
            return False
    except AgentSettingsError:
        return False
    folder = adapter_dir(home.deployments_dir(agent_id))
    for role in ("champion", "challenger"):
        deployment = read_pointer(folder, role)
        if deployment is None:
            if role == "champion":
                click.echo(f"agent {agent_id}: no adapter released; the bare base answers")
            continue
        gates = json.loads((Path(deployment.model_dir) / GATES_NAME).read_text())
        losses = ", ".join(
            f"{part} {loss:.4f} (was {gates['champion_loss'][part]:.4f})"
            for part, loss in gates["held_out_loss"].items()
            if part in gates["champion_loss"]
        )
        click.echo(f"{agent_id} {role} adapter {deployment.version}: held-out loss {losses}")
        click.echo(f"  adapter: {deployment.model_dir}")
    return True
