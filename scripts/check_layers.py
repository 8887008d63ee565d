#!/usr/bin/env python3
"""Checks the rule of docs/architecture.md: a folder includes from itself and the layers below
it, never from above. Prints each include that breaks it and exits 1; exits 0 when none does.

Usage: scripts/check_layers.py [SOURCE_DIR]
"""
import pathlib
import re
import sys

# Each folder and the folders it may include from (besides itself), lowest layer first.
ALLOWED = {
    "data": [],
    "models": ["data"],
    "train/comm": ["data"],
    "train/files": ["data", "models"],
    "train/report": ["data", "train/files"],
    "train": ["data", "models", "train/comm", "train/files", "train/report"],
    "app/commands": ["data", "models", "train", "train/comm", "train/files", "train/report"],
    "app": ["data", "models", "train", "train/comm", "train/files", "train/report",
            "app/commands"],
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(path):
    return str(pathlib.PurePosixPath(path).parent)


def violations(root):
    for folder, allowed in ALLOWED.items():
        for source in sorted((root / folder).glob("*")):
            if source.suffix not in (".h", ".cpp", ".def"):
                continue
            for included in INCLUDE.findall(source.read_text()):
                if "/" not in included:
                    continue  # a header of the same folder, or a system-style local name
                target = folder_of(included)
                if target != folder and target not in allowed:
                    yield f"{source.relative_to(root)}: includes {included} ({target} is not " \
                          f"below {folder}; allowed: {', '.join(allowed) or 'nothing'})"


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    missing = [f for f in ALLOWED if not (root / f).is_dir()]
    if missing:
        print(f"check_layers: no such folder under {root}: {', '.join(missing)}")
        return 1
    found = list(violations(root))
    for line in found:
        print(line)
    print(f"check_layers: {len(found)} include(s) against the layering rule")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
