#!/usr/bin/env python3
"""Writes scripts/torch/requirements.txt: torch at one version with its whole dependency closure,
every package pinned with the sha256 of each wheel pip would install, for each Python listed.

    python3 scripts/torch/lock.py 2.15.0 3.11 3.12 3.13

Needs PyPI (pip reads the packages' metadata; only small wheels are downloaded).
"""
import json, os, subprocess, sys, tempfile

version, pythons = sys.argv[1], sys.argv[2:] or ["3.11"]
# An explicit --platform admits only the tags named: every manylinux level up to glibc 2.28
# (torch's own), under both spellings.
platforms = [a for t in [f"manylinux_2_{m}_x86_64" for m in range(5, 29)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"] for a in ("--platform", t)]
pins = {}  # name -> (version, {sha256, ...})
with tempfile.TemporaryDirectory() as tmp:
    for py in pythons:
        report = os.path.join(tmp, f"report-{py}.json")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                        "--report", report, "--python-version", py, *platforms,
                        "--only-binary=:all:", "--target", os.path.join(tmp, "t"), f"torch=={version}"], check=True)
        for item in json.load(open(report))["install"]:
            name, ver = item["metadata"]["name"].lower(), item["metadata"]["version"]
            sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
            old = pins.setdefault(name, (ver, set()))
            if old[0] != ver:
                sys.exit(f"{name}: {old[0]} for one Python, {ver} for another; pin it by hand")
            old[1].add(sha)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")
with open(out, "w") as f:
    f.write(f"# torch {version} (CUDA, from PyPI) and its dependencies, for Python {', '.join(pythons)} on x86_64 Linux.\n"
            "# Installed with --require-hashes by scripts/test.sh --python-torch. Written by scripts/torch/lock.py.\n")
    for name in sorted(pins):
        ver, shas = pins[name]
        f.write(f"{name}=={ver}" + "".join(f" \\\n    --hash=sha256:{s}" for s in sorted(shas)) + "\n")
print(f"wrote {out}: {len(pins)} packages", file=sys.stderr)
