"""TEST.EXPECTED_RESULTS: check a run's metrics against the config's expectations (detectron2's
``verify_results``), as its CI does for the model zoo."""
import logging
import math
import pprint
from typing import Dict, Mapping

__all__ = ["verify_results"]

logger = logging.getLogger(__name__)


def _task_results(results: Mapping) -> Dict:
    """{task: {metric: value}} of one dataset; with several datasets, the first one's (detectron2)."""
    if results and all(isinstance(v, Mapping) and all(isinstance(x, Mapping) for x in v.values())
                       for v in results.values()):
        return dict(next(iter(results.values())))
    return dict(results)


def verify_results(cfg, results: Mapping) -> bool:
    """True when every ``[task, metric, expected, tolerance]`` of TEST.EXPECTED_RESULTS holds
    (``|actual - expected| <= tolerance``, actual finite); logs what failed. An empty list passes."""
    expected_results = cfg.TEST.EXPECTED_RESULTS
    if not len(expected_results):
        return True
    tasks = _task_results(results or {})
    failures = []
    for entry in expected_results:
        task, metric, expected, tolerance = entry
        actual = tasks.get(task, {}).get(metric)
        if actual is None or not math.isfinite(actual):
            failures.append(f"{task} {metric}: no finite result (got {actual!r})")
        elif abs(actual - expected) > tolerance:
            failures.append(f"{task} {metric}: {actual:.4f}, expected {expected} +- {tolerance}")
    if failures:
        logger.error("Result verification failed: %s", "; ".join(failures))
        logger.error("Expected results: %s", expected_results)
        logger.error("Actual results: %s", pprint.pformat(tasks))
        return False
    logger.info("Results verification passed.")
    return True
