#!/usr/bin/env python3
"""same_output.py [--subset] [--unordered] A B

Exit 0 when output A (a file or a folder) holds the same result as reference B; else print
the first difference and exit 1. What "the same" means is what rmu promises (README,
"Guarantees"): every file byte for byte, except that JSON (.json) and JSON Lines (.jsonl)
files are compared as parsed values with the wall-clock fields removed - the only fields
that differ between two runs of the same command with the same seed:
  seconds, date, tstamp (eval results, run records, MT-Bench answers and judgments),
  questions_per_second (eval results), step_s, tokens_per_s (training logs); and start_step
  (relearn.json: the step a resumed run started from - the history, not the result).
--subset: A may hold only some of B's JSON Lines records (a run stopped part way), each
  parsing; a last line cut off by a kill is allowed.
--unordered: JSON Lines records may come in another order (parallel judging)."""
import json, os, sys

VOLATILE = {"seconds", "date", "tstamp", "questions_per_second", "step_s", "tokens_per_s", "start_step"}


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def jsonl(path, torn_ok):
    out = []
    data = open(path, "rb").read().decode("utf-8")
    lines = data.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.dumps(strip(json.loads(line)), sort_keys=True))
        except ValueError:
            if torn_ok and i == len(lines) - 1:  # no "\n" after it: the writer was killed mid-line
                break
            raise SystemExit("%s:%d: not JSON" % (path, i + 1))
    return out


def same_file(a, b, subset, unordered):
    if a.endswith(".jsonl"):
        la, lb = jsonl(a, subset), jsonl(b, False)
        if subset:
            rest = list(lb)
            for x in la:
                if x not in rest:
                    return "%s: a record that the complete output does not hold: %s" % (a, x[:200])
                rest.remove(x)
            return None
        if unordered:
            la, lb = sorted(la), sorted(lb)
        if la != lb:
            n = next((i for i in range(min(len(la), len(lb))) if la[i] != lb[i]), min(len(la), len(lb)))
            return "%s: %d vs %d records, first difference at record %d" % (a, len(la), len(lb), n + 1)
        return None
    if a.endswith(".json"):
        try:
            ja = json.load(open(a))
        except ValueError as e:
            return "%s: not JSON (%s)" % (a, e)
        if strip(ja) != strip(json.load(open(b))):
            return "%s: differs from %s (wall-clock fields aside)" % (a, b)
        return None
    if open(a, "rb").read() != open(b, "rb").read():
        return "%s: bytes differ from %s" % (a, b)
    return None


def files(root):
    out = set()
    for d, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def main():
    args = sys.argv[1:]
    subset, unordered = "--subset" in args, "--unordered" in args
    a, b = [x for x in args if not x.startswith("--")]
    if os.path.isdir(b):
        if not os.path.isdir(a):
            return "%s is not a folder" % a
        fa, fb = files(a), files(b)
        if fa != fb:
            return "%s: files %s missing, %s extra" % (a, sorted(fb - fa)[:5], sorted(fa - fb)[:5])
        for f in sorted(fb):
            r = same_file(os.path.join(a, f), os.path.join(b, f), subset, unordered)
            if r:
                return r
        return None
    if not os.path.isfile(a):
        return "%s is missing" % a
    return same_file(a, b, subset, unordered)


if __name__ == "__main__":
    r = main()
    if r:
        print(r)
        sys.exit(1)
