from collections.abc import Iterable, Iterator

import dagster as dg


def check_results(checks: Iterable) -> Iterator[dg.AssetCheckResult]:
    """Core check records (name, passed, description, details) as blocking-severity results."""
    for check in checks:
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=check.description,
            metadata=check.details,
        )
