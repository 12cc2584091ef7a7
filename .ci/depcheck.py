#!/usr/bin/env python3
"""Lower floors never reach up: every crmdq crate may depend (normal, dev or build) only on
crmdq crates listed before it in the workspace's `members` (Cargo.toml lists them in
data-flow order). Exits 1 naming each upward edge. Reads `cargo metadata`."""
import json
import pathlib
import subprocess
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout
)
rank = {}
for pkg in meta["packages"]:
    folder = pathlib.Path(pkg["manifest_path"]).parent.relative_to(root).as_posix()
    rank[pkg["name"]] = (members.index(folder), folder)
bad = []
for pkg in meta["packages"]:
    me, folder = rank[pkg["name"]]
    for dep in pkg["dependencies"]:
        if dep["name"] in rank and rank[dep["name"]][0] >= me:
            kind = dep["kind"] or "normal"
            bad.append(f"{folder} ({pkg['name']}) depends on {rank[dep['name']][1]} ({dep['name']}, {kind}), listed at or after it")
if bad:
    print("upward dependencies (a crate may use only crates listed before it in Cargo.toml's members):")
    print("\n".join("  " + b for b in bad))
    sys.exit(1)
print(f"depcheck: {len(rank)} crates, every dependency points down the members order")
