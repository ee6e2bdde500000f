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

from collections import defaultdict

from stream_processor.core.events import Dataset
from stream_processor.core.layout import late_marker_root, parse_late_marker
from stream_processor.core.ports import HistoryStore

_DATASETS = {d.value: d for d in Dataset}


def late_markers(store: HistoryStore, prefix: str) -> dict[Dataset, dict[str, list[str]]]:
    """Pending markers: dataset → marked day → marker keys."""
    found: dict[Dataset, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for key in store.keys(late_marker_root(prefix)):
        named = parse_late_marker(prefix, key)
        if named and named[0] in _DATASETS:
            found[_DATASETS[named[0]]][named[1]].append(key)
    return {dataset: dict(days) for dataset, days in found.items()}
