#!/usr/bin/env python3
"""Writes edits.json: 2,000 Wikipedia-edit-like rows over one day, deterministically (seed 42)."""
import json
import random

rng = random.Random(42)
channels = ["#en.wikipedia", "#de.wikipedia", "#fr.wikipedia", "#ja.wikipedia", "#es.wikipedia"]
countries = ["United States", "Germany", "France", "Japan", "Spain", "Brazil", "India", None]
namespaces = ["Main", "Talk", "User", "Wikipedia", "Template"]
pages = [f"Page {i}" for i in range(300)]
users = [f"user{i}" for i in range(120)]
with open("edits.json", "w") as out:
    for i in range(2000):
        ms = i * 43_200 + rng.randrange(43_200)
        hh, rem = divmod(ms, 3_600_000)
        mm, rem = divmod(rem, 60_000)
        ss, frac = divmod(rem, 1000)
        added = int(rng.paretovariate(1.2) * 10)
        deleted = rng.choice([0, 0, 0, rng.randrange(200)])
        row = {
            "timestamp": f"2016-06-27T{hh:02}:{mm:02}:{ss:02}.{frac:03}Z",
            "channel": rng.choice(channels),
            "page": rng.choice(pages),
            "user": rng.choice(users),
            "namespace": rng.choice(namespaces),
            "isRobot": rng.random() < 0.2,
            "countryName": rng.choice(countries),
            "added": added,
            "deleted": deleted,
            "delta": added - deleted,
        }
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
