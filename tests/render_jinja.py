#!/usr/bin/env python3
"""Renders conversations with a model's own chat template, as HuggingFace transformers'
apply_chat_template does (jinja2 sandbox, trim_blocks, lstrip_blocks, raise_exception, tojson),
without strftime_now: a template's own default date is rendered (Llama 3.x: "26 Jul 2024").

    render_jinja.py TOKENIZER_CONFIG.json CONVERSATIONS.json

CONVERSATIONS.json: a list of {"messages": [...], "add_generation_prompt": bool, "enable_thinking":
bool (optional)}. Prints a JSON
list, for each: {"text": ...} or {"error": ...} (the template refused the conversation)."""
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def token(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        return v.get("content")
    return v


def main():
    cfg = json.load(open(sys.argv[1], encoding="utf-8"))
    cases = json.load(open(sys.argv[2], encoding="utf-8"))
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(cfg["chat_template"])
    out = []
    for case in cases:
        try:
            extra = {"enable_thinking": case["enable_thinking"]} if "enable_thinking" in case else {}
            text = template.render(messages=case["messages"], add_generation_prompt=case["add_generation_prompt"],
                                   bos_token=token(cfg, "bos_token") or "", eos_token=token(cfg, "eos_token") or "",
                                   **extra)
            out.append({"text": text})
        except jinja2.exceptions.TemplateError as e:
            out.append({"error": str(e)})
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
