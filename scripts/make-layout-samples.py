#!/usr/bin/env python3
"""Writes the layout samples of docs/RECIPES.md from the vendored real data (deterministic):

- data/s1k-layout-sample.jsonl: the Sky-T1 AMC23 traces (data/skyt1-amc23-sample.jsonl) in the
  s1K-1.1 layout: question, solution (reference answer), deepseek_thinking_trajectory (the text
  between the thought tags), deepseek_attempt (the text between the solution tags).
- data/openr1-layout-sample.jsonl: MATH-500 problems (data/math500-sample.jsonl) in the OpenR1
  layout, with two alternative generations each: the Sky-T1 trace and the reference solution
  (data/skyt1-math500-sample.jsonl answers the same problems, in order).
- data/gsm8k-messages-sample.jsonl: the first 12 GSM8K records as OpenAI messages with a
  system prompt.
"""
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "data")


def read(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(name, records):
    with open(os.path.join(DATA, name), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def between(text, begin, end):
    b = text.index(begin) + len(begin)
    return text[b:text.index(end, b)].strip()


s1k = []
for r in read("skyt1-amc23-sample.jsonl"):
    trace = r["code"][0]
    s1k.append({"question": r["question"], "solution": r["gt"],
                "deepseek_thinking_trajectory": between(trace, "<|begin_of_thought|>", "<|end_of_thought|>"),
                "deepseek_attempt": between(trace, "<|begin_of_solution|>", "<|end_of_solution|>"),
                "cot_type": "math", "source_type": "amc23"})
write("s1k-layout-sample.jsonl", s1k)

openr1 = []
for m, s in zip(read("math500-sample.jsonl"), read("skyt1-math500-sample.jsonl")):
    assert m["problem"] == s["question"]
    openr1.append({"problem": m["problem"], "solution": m["solution"], "answer": m["answer"],
                   "uuid": m["unique_id"], "generations": [s["code"][0], m["solution"]],
                   "correctness_math_verify": [bool(s["score"][0]), True]})
write("openr1-layout-sample.jsonl", openr1)

messages = []
for i, r in enumerate(read("gsm8k-sample.jsonl")[:12]):
    messages.append({"id": f"gsm8k-{i}", "messages": [
        {"role": "system", "content": "Solve the problem. Show your reasoning, one step per line."},
        {"role": "user", "content": r["question"]},
        {"role": "assistant", "content": r["answer"]}]})
write("gsm8k-messages-sample.jsonl", messages)
