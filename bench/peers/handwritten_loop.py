"""The hand-written loop issue 9 describes: the honest sync script people write, not a strawman.

``requests`` page by page (numbered pages, 1000 a page), ONE connection, one
``INSERT ... ON CONFLICT (id) DO UPDATE`` per record, a commit per page. No validation, no audit
trail, no change detection (every record is rewritten on every run), no staging, no counts.
It stores the same columns our ``offers`` table has, so the rows are as wide as ours.

Run by the benchmark inside ``bench/.venv-peers``:
``python -m bench.peers.handwritten_loop --base-url URL --db-url URL`` (key in ``BENCH_API_KEY``).
Prints one JSON line: what it loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import psycopg2
import requests
from psycopg2.extras import Json

from bench.peers._memory import vm_hwm_mb

SCHEMA = """
CREATE TABLE IF NOT EXISTS advertisers (
    id text PRIMARY KEY, long_id text, hash_id text, name text, company text, email text, status text,
    currency text, tags text[], created timestamptz, modified timestamptz, synced_at timestamptz
);
CREATE TABLE IF NOT EXISTS offers (
    id text PRIMARY KEY, hash_id text, advertiser_id text, title text, description text, status text,
    visibility text, currency text, comm_model text, payout numeric(18,6), payout_currency text,
    revenue numeric(18,6), payouts jsonb, geo text[], device text[], os text[], categories text[], url text,
    preview_url text, created timestamptz, modified timestamptz, synced_at timestamptz
);
"""

UPSERT_ADVERTISER = """
INSERT INTO advertisers (id, long_id, hash_id, name, company, email, status, currency, tags, created, modified,
                         synced_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (id) DO UPDATE SET long_id = EXCLUDED.long_id, hash_id = EXCLUDED.hash_id, name = EXCLUDED.name,
    company = EXCLUDED.company, email = EXCLUDED.email, status = EXCLUDED.status, currency = EXCLUDED.currency,
    tags = EXCLUDED.tags, created = EXCLUDED.created, modified = EXCLUDED.modified, synced_at = now()
"""

UPSERT_OFFER = """
INSERT INTO offers (id, hash_id, advertiser_id, title, description, status, visibility, currency, comm_model,
                    payout, payout_currency, revenue, payouts, geo, device, os, categories, url, preview_url,
                    created, modified, synced_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (id) DO UPDATE SET hash_id = EXCLUDED.hash_id, advertiser_id = EXCLUDED.advertiser_id,
    title = EXCLUDED.title, description = EXCLUDED.description, status = EXCLUDED.status,
    visibility = EXCLUDED.visibility, currency = EXCLUDED.currency, comm_model = EXCLUDED.comm_model,
    payout = EXCLUDED.payout, payout_currency = EXCLUDED.payout_currency, revenue = EXCLUDED.revenue,
    payouts = EXCLUDED.payouts, geo = EXCLUDED.geo, device = EXCLUDED.device, os = EXCLUDED.os,
    categories = EXCLUDED.categories, url = EXCLUDED.url, preview_url = EXCLUDED.preview_url,
    created = EXCLUDED.created, modified = EXCLUDED.modified, synced_at = now()
"""


def advertiser_params(a: dict) -> tuple:
    return (
        str(a["id"]),
        a.get("_id"),
        a.get("hashId"),
        a.get("name"),
        a.get("company"),
        a.get("email"),
        a.get("status"),
        a.get("currency"),
        a.get("tags") or [],
        a.get("created"),
        a.get("modified"),
    )


def offer_params(c: dict) -> tuple:
    first = (c.get("payouts") or [{}])[0]
    return (
        str(c["id"]),
        c.get("hashId"),
        c.get("advertiserId"),
        c.get("title"),
        c.get("description"),
        c.get("status"),
        c.get("visibility"),
        c.get("currency") or "USD",
        c.get("commModel"),
        first.get("payout"),
        first.get("currency"),
        first.get("revenue"),
        Json(c.get("payouts") or []),
        c.get("geo") or [],
        c.get("device") or [],
        c.get("os") or [],
        c.get("categories") or [],
        c.get("url"),
        c.get("previewUrl"),
        c.get("created"),
        c.get("modified"),
    )


def sync(base_url: str, api_key: str, db_url: str, page_size: int = 1000) -> dict:
    session = requests.Session()
    session.headers["X-Api-Key"] = api_key
    conn = psycopg2.connect(db_url)
    cur = conn.cursor()
    cur.execute(SCHEMA)
    conn.commit()
    loaded = {"advertisers": 0, "campaigns": 0, "requests": 0}
    for entity, upsert, params in (
        ("advertisers", UPSERT_ADVERTISER, advertiser_params),
        ("campaigns", UPSERT_OFFER, offer_params),
    ):
        page = 1
        while True:
            response = session.get(f"{base_url}/v2/{entity}", params={"page": page, "limit": page_size}, timeout=60)
            response.raise_for_status()
            loaded["requests"] += 1
            records = response.json()[entity]
            for record in records:
                cur.execute(upsert, params(record))
            conn.commit()
            loaded[entity] += len(records)
            if len(records) < page_size:
                break
            page += 1
    cur.close()
    conn.close()
    return loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    loaded = sync(args.base_url, os.environ["BENCH_API_KEY"], args.db_url, args.page_size)
    print(json.dumps({**loaded, "inner_wall_s": round(time.perf_counter() - started, 3), "vm_hwm_mb": vm_hwm_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
