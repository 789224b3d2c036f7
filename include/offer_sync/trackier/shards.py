"""Splitting a sweep into shards for dynamic task mapping.

Each Airflow task instance costs about a second of overhead, so shards are coarse: tens of pages,
and never more than ``max_shards`` per entity. How an entity can be split depends on what the API
tells us on page 1:

- numbered pages with a total: contiguous page ranges (``pages 1-50``, ``51-100`` ...). The last
  range is open-ended (it reads on until a short page), so a catalogue that grew since the probe
  is still read to its end, and the shortfall against the total is reported;
- a cursor (``nextPageToken``) only: one stream per entity. A cursor cannot be entered in the
  middle, and the only documented filter (``advertiser[]``) would cost a request per advertiser;
- numbered pages without a total: one stream that stops at the first short page.

Every shard also carries the probe's verdict (``pagination``: the style used and why ``auto``
fell back, if it did), which the sweep check passes on to ``sync_runs.result``, and for numbered
pages the fingerprint of page 1 (``first_page``), so that each shard notices page 1 served again.

Shards are plain dicts because they travel through XCom (small, JSON-serialisable).
"""

from __future__ import annotations

from typing import Any

from include.offer_sync.trackier.pagination import Entity, Probe


def plan_shards(entity: Entity, probe: Probe, pages_per_shard: int, max_shards: int) -> list[dict[str, Any]]:
    """The shard specs for one entity."""
    base = {
        "entity": entity,
        "limit": probe.page_size,
        "expected_total": probe.total,
        "pagination": probe.verdict(),
        "first_page": probe.first_page,
    }
    if probe.style == "cursor":
        return [
            {**base, "index": 0, "style": "cursor", "first": None, "last": None, "label": f"{entity}: cursor stream"}
        ]
    if probe.total is None or probe.total_pages is None:
        return [{**base, "index": 0, "style": "page", "first": 1, "last": None, "label": f"{entity}: pages 1..end"}]
    pages = max(1, probe.total_pages)
    per_shard = max(1, pages_per_shard, -(-pages // max(1, max_shards)))
    shards: list[dict[str, Any]] = []
    for index, first in enumerate(range(1, pages + 1, per_shard)):
        last = min(pages, first + per_shard - 1)
        is_last = last == pages
        shards.append(
            {
                **base,
                "index": index,
                "style": "page",
                "first": first,
                "last": None if is_last else last,
                "label": f"{entity}: pages {first}-{last}{'+' if is_last else ''} of {pages}",
                "planned_last": last,
            }
        )
    return shards
