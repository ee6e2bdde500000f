"""Late history: the markers the writer leaves beside history it writes for days routine
maintenance no longer looks at (`core.history.is_late`), read back.

A marker is an empty object, `<prefix>_late/<dataset>/event_date=D/<file>.late`, named
after the history object it stands beside. Snapshots treat every day from the earliest marked one on
as unsettled (listed and digested, rebuilt where the content changed); maintenance compacts
the marked days, then deletes the markers it has settled. Reading them is one listing of a
prefix that is empty on a routine day: a routine run costs the same however long the
history, and any lateness (a consumer down for weeks, an EventBridge archive replay months
later) ends exact.
"""

from __future__ import annotations

import re
from collections import defaultdict

from stream_processor.adapters.history_store import HistoryStore
from stream_processor.core.events import Dataset
from stream_processor.core.history import LATE_PREFIX

_MARKER = re.compile(r"^([a-z_]+)/event_date=(\d{4}-\d{2}-\d{2})/")
_DATASETS = {d.value: d for d in Dataset}


def late_markers(store: HistoryStore, prefix: str) -> dict[Dataset, dict[str, list[str]]]:
    """Pending markers: dataset → marked day → marker keys."""
    found: dict[Dataset, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    root = f"{prefix}{LATE_PREFIX}"
    for key in store.keys(root):
        match = _MARKER.match(key[len(root) :])
        if match and match.group(1) in _DATASETS:
            found[_DATASETS[match.group(1)]][match.group(2)].append(key)
    return {dataset: dict(days) for dataset, days in found.items()}
