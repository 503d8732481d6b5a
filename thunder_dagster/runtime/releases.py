"""What the assets that release a model share: the A/B test a challenger is released with."""

import dagster as dg


def test_challenger(context: dg.AssetExecutionContext, queries, champion: str, challenger: str):
    """A model released as challenger gets its A/B test (its agent's running one, if any, ends
    superseded or inconclusive); the test's id and the ended one's, as asset metadata."""
    from thunder_dagster.feedback.experiments import AbTestStore, replace_challenger_test

    with queries.open() as store:
        test, ended = replace_challenger_test(
            AbTestStore(store.engine),
            context.partition_key,
            champion,
            challenger,
            f"run {context.run.run_id}",
        )
    context.log.info(f"A/B test {test.id}: {challenger} against {champion}")
    return {
        "ab_test": test.id,
        "replaced_test": f"{ended.id} ({ended.status})" if ended else "none",
    }
