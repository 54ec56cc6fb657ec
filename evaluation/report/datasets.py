"""The rows of the tables that hold one row per dataset (Table 3 and its companion tables): each run's results under
the label its row shows, the methods of all of them in one order, and captions that state a setting once when every
dataset shares it and per dataset when they differ.

A run's own report is the one-row case of the same tables, so the single-run and the combined report cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from evaluation.report.formatting import shown
from evaluation.schema import BenchmarkResults


@dataclass(frozen=True)
class DatasetRow:
    """One benchmark run's results as a row of the tables across datasets, shown as `label`."""

    label: str
    results: BenchmarkResults

    @classmethod
    def of(cls, results: BenchmarkResults) -> DatasetRow:
        return cls(results.dataset.name, results)


def dataset_rows(results: Sequence[BenchmarkResults]) -> list[DatasetRow]:
    """A row per results, labelled by its dataset; runs on the same dataset are told apart by their run names, and
    by their position when even those agree."""
    names = [item.dataset.name for item in results]
    labels = [item.dataset.name if names.count(item.dataset.name) == 1 else f"{item.dataset.name} ({item.run.name})"
              for item in results]
    rows = []
    for position, (label, item) in enumerate(zip(labels, results, strict=True)):
        if labels.count(label) > 1:  # the same dataset and run name: a run copied, or passed twice
            label = f"{label} #{labels[:position + 1].count(label)}"
        rows.append(DatasetRow(label, item))
    return rows


def merged_order(orders: Sequence[Sequence[str]]) -> list[str]:
    """The keys of several orders in one order that keeps the relative order of every one of them where they agree;
    where they conflict, the earlier order wins. Each run lists its methods in registry order, so merging the runs'
    orders gives the registry order of all their methods without importing the registry (and torch with it)."""
    pending = [list(dict.fromkeys(order)) for order in orders]
    merged: list[str] = []
    while any(pending):
        heads = [order[0] for order in pending if order]
        # a head that no order lists after something still pending may come next; else the first order decides
        head = next((key for key in heads if not any(key in order[1:] for order in pending)), heads[0])
        merged.append(head)
        pending = [[key for key in order if key != head] for order in pending]
    return merged


def method_columns(rows: Sequence[DatasetRow], keys: Iterable[str]) -> list[str]:
    """`keys` (the methods some of the rows measured) in the order of Table 3's columns: the registry order of every
    method the rows ran, so that every table across the datasets lists the methods alike; keys of no method last."""
    wanted = list(dict.fromkeys(keys))
    order = merged_order([list(row.results.methods) for row in rows])
    return [key for key in order if key in wanted] + [key for key in wanted if key not in order]


def method_label(rows: Sequence[DatasetRow], key: str) -> str:
    """A method's display name from the first results that ran it; else its key."""
    return next((row.results.methods[key].label for row in rows if key in row.results.methods), key)


def per_dataset(values: Sequence[tuple[str, object]]) -> str:
    """A setting of each dataset ((row label, value) pairs) as caption text: the value when every dataset shares it,
    else each dataset's, as "128 (shapes), 64 (fashion-mnist)"."""
    texts = [shown(value) for _, value in values]
    if len(set(texts)) <= 1:
        return texts[0] if texts else "n/a"
    return ", ".join(f"{text} ({label})" for (label, _), text in zip(values, texts, strict=True))
