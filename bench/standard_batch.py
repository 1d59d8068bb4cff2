"""The standard test batch: 500,000 rows keyed by thirdPartyId with 8 attributes (about 37 MB),
realistic values, percent-encoded UTF-8, about 15 % empty cells, trailing empties dropped,
from a fixed seed, so every run and every machine gets the same bytes.

    python bench/standard_batch.py [OUT] [--rows N]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from urllib.parse import quote

SEED = 20261123
HEADER = [
    "thirdPartyId",
    "firstName",
    "city",
    "category",
    "loyaltyTier",
    "lastPurchase",
    "price",
    "points",
    "postalCode",
]
FIRST_NAMES = ["Anaïs", "Björn", "Chloé", "Dmitri", "Élodie", "François", "Günther", "Håkon", "Inés", "José",
               "Łukasz", "Maëlle", "Noémie", "Øyvind", "Renée", "Søren", "Zoë", "Ana", "Li", "Yuki", "Olga",
               "Mohammed", "Priya", "Sarah", "Tomás", "Wei", "Aisha", "Kofi", "Lucía", "Mateus"]  # fmt: skip
CITIES = ["São Paulo", "Zürich", "Kraków", "Malmö", "Reykjavík", "Düsseldorf", "Montréal", "Córdoba", "Oslo",
          "New York", "Paris", "Tel Aviv", "Lisboa", "Ciudad de México", "İstanbul", "Hà Nội", "Berlin"]  # fmt: skip
NON_LATIN_CITIES = ["東京", "大阪", "Москва", "Санкт-Петербург", "القاهرة", "Αθήνα", "서울", "मुंबई"]
NON_LATIN_SHARE = 0.15
CATEGORIES = ["Home & Garden", "Sports & Outdoors", "Books", "Toys & Games", "Health & Beauty", "Electronics",
              "Food & Drink", "Shoes, Bags", "Music", "Pet Supplies"]  # fmt: skip
TIERS = ["bronze", "silver", "gold", "platinum"]
EMPTY = 0.15


def visitor_id(n: int) -> str:
    """The thirdPartyId of the standard batch's row n (counting from 0)."""
    return f"c{n:07d}"


def values(rng: random.Random) -> list[str]:
    """One row's attribute values, in HEADER's order after the key."""
    return [
        rng.choice(FIRST_NAMES),
        rng.choice(NON_LATIN_CITIES if rng.random() < NON_LATIN_SHARE else CITIES),
        rng.choice(CATEGORIES),
        rng.choice(TIERS),
        f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        f"{rng.randint(1, 2000)}.{rng.randint(0, 99):02d}",
        str(rng.randint(0, 250_000)),
        f"{rng.randint(1000, 99999)}",
    ]


def rows(count: int, seed: int = SEED, first: int = 0):
    """The data lines, without line ends, for ids c{first} onwards."""
    rng = random.Random(seed + first)
    for n in range(first, first + count):
        cells = [quote(visitor_id(n), safe="")]
        cells += ["" if rng.random() < EMPTY else quote(v, safe="") for v in values(rng)]
        while cells[-1] == "":
            cells.pop()  # Target's ragged rows: trailing empty fields are left out
        yield ",".join(cells)


def write(path: Path, count: int = 500_000, seed: int = SEED, first: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="ascii", newline="\n") as out:
        out.write("batch=" + ",".join(HEADER) + "\n")
        for line in rows(count, seed, first):
            out.write(line + "\n")
    return path


def standard_batch(count: int = 500_000, first: int = 0) -> Path:
    """The standard batch file (or, with `first`, one for other ids), generated once into
    bench/data, which is never committed."""
    path = Path(__file__).parent / "data" / f"batch-{count}-from-{first}.txt"
    return path if path.exists() else write(path, count, first=first)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent / "data" / "batch-500000-from-0.txt")
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    print(write(args.out, args.rows))
