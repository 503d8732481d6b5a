import dagster as dg

from thunder_dagster.resources.home import ThunderHome


@dg.asset(
    group_name="instruct",
    kinds={"onnx", "gguf"},
    check_specs=[dg.AssetCheckSpec("matches_the_float_reference", asset="instruct_base")],
)
def instruct_base(context: dg.AssetExecutionContext, thunder: ThunderHome):
    """The pretrained instruct base that chat and instruction agents answer with, as one ONNX
    graph checked against a float reference forward pass (shared by every such agent)."""
    from thunder_dagster.instruct.base import BaseFile, BaseUnavailableError
    from thunder_dagster.instruct.builds import (
        CANDIDATE_TOLERANCE,
        LOGIT_TOLERANCE,
        BaseBuildError,
        base_folder,
        build_base,
    )

    home = thunder.home()
    try:
        card = build_base(home.bases_dir)
    except (BaseUnavailableError, BaseBuildError) as error:
        raise dg.Failure(str(error)) from None
    parity, provenance = card.parity, card.provenance
    folder = base_folder(home.bases_dir, BaseFile())
    yield dg.MaterializeResult(
        metadata={
            "model": provenance.model,
            "package": f"{provenance.package} {provenance.version}",
            "licence": provenance.license,
            "file_sha256": provenance.sha256,
            "graph": dg.MetadataValue.path(str(folder)),
            "graph_bytes": card.model_bytes,
            "context_tokens": card.positions,
            "parity_steps": f"{parity.agreeing_steps} of {parity.steps} greedy steps agree",
            "parity_sequences": f"{parity.agreeing_sequences} of {parity.prompts} answers agree",
            "max_candidate_error": parity.max_candidate_error,
            "max_logit_error": parity.max_logit_error,
            "build_seconds": card.build_seconds,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="matches_the_float_reference",
                passed=parity.passed,
                metadata={
                    "tolerances": f"{CANDIDATE_TOLERANCE} (highest logits), "
                    f"{LOGIT_TOLERANCE} (all logits)"
                },
            )
        ],
    )
    context.log.info(f"instruct base ready in {folder}")
