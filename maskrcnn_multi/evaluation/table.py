"""Small text tables for evaluation results (no third-party table library)."""
import logging
from typing import Mapping

__all__ = ["create_small_table", "print_csv_format"]

logger = logging.getLogger(__name__)


def _format_value(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def create_small_table(small_dict: Mapping[str, object]) -> str:
    """A one-row pipe table: the keys as header, the values (floats with 3 decimals) below.

    >>> print(create_small_table({"AP": 50.0, "AP50": 75.25}))
    |   AP   |  AP50  |
    |:------:|:------:|
    | 50.000 | 75.250 |
    """
    keys = [str(key) for key in small_dict]
    values = [_format_value(value) for value in small_dict.values()]
    widths = [max(len(key), len(value)) + 2 for key, value in zip(keys, values)]
    header = "|" + "|".join(key.center(width) for key, width in zip(keys, widths)) + "|"
    rule = "|" + "|".join(":" + "-" * (width - 2) + ":" for width in widths) + "|"
    row = "|" + "|".join(value.center(width) for value, width in zip(values, widths)) + "|"
    return "\n".join([header, rule, row])


def print_csv_format(results: Mapping[str, Mapping[str, float]]) -> None:
    """Log results as detectron2's "copypaste:" lines, easy to paste into a spreadsheet.

    ``results``: {task: {metric: value}}, e.g. COCOEvaluator.evaluate()'s return value.
    """
    for task, metrics in results.items():
        main_metrics = {name: value for name, value in metrics.items() if "-" not in name}
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(main_metrics))
        logger.info("copypaste: %s", ",".join(f"{value:.4f}" for value in main_metrics.values()))
