#!/usr/bin/env python3
"""Lints the Dockerfile against the rules the image must keep (in the spirit of hadolint, which
is not installable from a package registry): base images pinned to a version, the runtime stage
running as a non-root user, a HEALTHCHECK, apt caches removed in the layer that filled them,
no recommended packages pulled in, and no ADD where COPY does. Prints one line per problem
(file:line: rule: what to do) and exits 1 when there is any."""

import re
import sys


def stages(lines):
    """(first line number, lines) of each build stage."""
    current = None
    for number, line in lines:
        if re.match(r"(?i)^\s*FROM\s", line):
            current = (number, [])
            yield current
        if current is not None:
            current[1].append((number, line))


def logical_lines(text):
    """Joins continuation lines; yields (line number of the start, text)."""
    start, parts = None, []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if start is None:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        yield start, " ".join(parts)
        start, parts = None, []


def lint(path):
    text = open(path, encoding="utf-8").read()
    lines = list(logical_lines(text))
    problems = []

    def problem(number, rule, message):
        problems.append(f"{path}:{number}: {rule}: {message}")

    args = {}
    for number, line in lines:
        match = re.match(r"(?i)^ARG\s+(\w+)=(\S+)", line)
        if match:
            args[match.group(1)] = match.group(2)
        if re.match(r"(?i)^ADD\s", line):
            problem(number, "copy-not-add", "use COPY (ADD fetches URLs and unpacks archives)")
        if re.search(r"apt-get\s+install", line):
            if "--no-install-recommends" not in line:
                problem(number, "apt-no-recommends", "add --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in line:
                problem(number, "apt-cache", "remove /var/lib/apt/lists/* in the same RUN")
        if re.search(r"\bcurl\b.*\|\s*(ba)?sh", line):
            problem(number, "pipe-to-shell", "do not pipe a download into a shell")

    all_stages = list(stages(lines))
    for number, stage in all_stages:
        image = stage[0][1].split()[1]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if ":" not in image and "@" not in image:
            problem(number, "pinned-base", f"pin {image} to a version tag or digest")
        elif image.endswith(":latest"):
            problem(number, "pinned-base", f"pin {image} to a version, not latest")
    if not all_stages:
        problem(1, "stages", "no FROM")
        return problems
    last_number, last = all_stages[-1]
    users = [line for _, line in last if re.match(r"(?i)^USER\s", line)]
    if not users:
        problem(last_number, "non-root", "the runtime stage needs a USER that is not root")
    elif re.match(r"(?i)^USER\s+(root|0)(:|\s|$)", users[-1]):
        problem(last_number, "non-root", "the runtime stage must not run as root")
    if not any(re.match(r"(?i)^HEALTHCHECK\s", line) for _, line in last):
        problem(last_number, "healthcheck", "add a HEALTHCHECK (e.g. ferry health)")
    return problems


if __name__ == "__main__":
    found = []
    for path in sys.argv[1:] or ["Dockerfile"]:
        found += lint(path)
    for line in found:
        print(line)
    sys.exit(1 if found else 0)
