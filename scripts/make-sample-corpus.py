#!/usr/bin/env python3
"""Writes data/stories-sample.jsonl: a small TinyStories-style corpus for the bundled model.

Each record's prompt introduces a character and a thing; each response step either copies
them from the prompt ("copy") or tells something that needs nothing from it ("free").
Records are all-copy, all-free or mixed, so both sample and step scores have something to
separate. Deterministic (fixed seed); the text is written here, no dataset is used.
"""
import json
import random
import sys

NAMES = ["Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Sam", "Anna", "Tim", "Lucy", "Jack", "Bob"]
THINGS = ["ball", "kite", "dog", "cat", "box", "hat", "cake", "doll", "car", "book"]
PROMPTS = [
    "Once upon a time, there was a little girl named {n}. {n} had a red {t}.",
    "One day, a boy named {n} found a big {t} in the park.",
    "There was a kind child called {n}. {n} loved a small {t} very much.",
]
COPY = [
    "{n} took the {t} and ran outside. {n} played with the {t} all day.",
    "{n} said, \"I love my {t}!\" {n} hugged the {t} and smiled.",
    "Then {n} showed the {t} to mom. Mom said, \"What a nice {t}, {n}!\"",
]
FREE = [
    "The sun was shining and the birds were singing in the sky.",
    "It was a warm day. The flowers were pretty and the grass was green.",
    "Later, it started to rain. Everyone went inside and had some soup.",
]


def main(out_path: str) -> None:
    rng = random.Random(7)
    records = []
    kinds = ["copy"] * 16 + ["free"] * 16 + ["mixed"] * 8
    for i, kind in enumerate(kinds):
        n, t = rng.choice(NAMES), rng.choice(THINGS)
        prompt = rng.choice(PROMPTS).format(n=n, t=t)
        if kind == "copy":
            steps = [("copy", s) for s in rng.sample(COPY, 2)]
        elif kind == "free":
            steps = [("free", s) for s in rng.sample(FREE, 2)]
        else:
            steps = [("free", rng.choice(FREE)), ("copy", rng.choice(COPY))]
            rng.shuffle(steps)
        response = "\n\n".join(s.format(n=n, t=t) for _, s in steps)
        records.append({"id": f"story-{i:02d}", "kind": kind, "step_kinds": [k for k, _ in steps],
                        "prompt": prompt, "response": response})
    rng.shuffle(records)
    with open(out_path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/stories-sample.jsonl")
