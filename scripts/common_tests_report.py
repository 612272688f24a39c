"""Counts of transformers' own common model tests on our models and, as a reference, on transformers' Marian, with
the installed transformers, written with their provenance to the file that docs/compatibility.md quotes:

    HF_HUB_OFFLINE=1 python scripts/common_tests_report.py --output docs/benchmarks/common-tests.json
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from vaswani_hf.files import write_atomic
from vaswani_hf.provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    # name: (extra environment, pytest -k expression)
    "vaswani": ({}, "not Marian"),
    "marian": ({"VASWANI_COMMON_TESTS_MARIAN": "1"}, "Marian"),
}


def counts(summary: str) -> dict[str, int]:
    """passed, failed (failures and errors) and skipped tests of pytest's closing line, as a user running the command
    reads them ("105 passed, 54 skipped, 183 deselected, 1946 subtests passed in 25.13s")."""
    found = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", summary)}
    return {
        "passed": found.get("passed", 0),
        "failed": found.get("failed", 0) + found.get("error", 0) + found.get("errors", 0),
        "skipped": found.get("skipped", 0),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    report = {"provenance": provenance(), "runs": {}}
    for name, (env, expression) in RUNS.items():
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/test_transformers_common.py"]
        command += ["-k", expression]
        process = subprocess.run(
            command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, capture_output=True, text=True
        )
        summary = process.stdout.strip().splitlines()[-1] if process.stdout.strip() else ""
        report["runs"][name] = {"command": " ".join(["python", *command[1:]]), "summary": summary, **counts(summary)}
        print(name, report["runs"][name], flush=True)
    write_atomic(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
