"""Structure-aware fuzzing of .bnn and .tflite files: parse a valid seed,
mutate fields semantically, write a well-formed file again, then load and
run it once in a limited child process (tests/fuzz/sandbox.py).

    python tests/fuzz/mutate.py --cases 2000 --seconds 150 [--seed 0] [--targets bnn,tflite]
                                [--timeout 10] [--as-gib 3] [--sweep] [--allow-known] [--out DIR]

Stops at whichever comes first, the case count or the time budget. Prints
how many cases loaded and ran, how many were refused with a bnnrt error, and
every finding grouped by class (kind and where it happened), with the
mutations of its first case; writes each group's first file to ``--out``
(a temporary directory by default) for tests/fuzz/regressions. Exits 1 on
any finding (with ``--allow-known``: on any finding that is not an open
defect of KNOWN_FINDINGS). ``--sweep`` makes every single-field edit of every
seed in turn instead of random mutations. Deterministic: case i of seed s is
always the same file. The reproducers of past findings are replayed by
tests/test_hostile.py.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sandbox import DEFAULT_AS_BYTES, DEFAULT_TIMEOUT, FINDING_KINDS, Sandbox  # noqa: E402
from structured import load_seeds, make_case, sweep_cases  # noqa: E402

#: Finding classes of defects still open on this branch (a regex over
#: "class: detail"), each with why: ``--allow-known`` and tests/test_hostile.py
#: report these without failing. Remove an entry when its fix lands.
KNOWN_FINDINGS: list[tuple[str, str]] = []


def known_reason(cls: str, detail: str) -> str | None:
    """Why a finding is an open defect of KNOWN_FINDINGS, or None for a new one."""
    return next((why for pattern, why in KNOWN_FINDINGS if re.search(pattern, f"{cls}: {detail}")), None)


def finding_class(kind: str, target: str, detail: str, mutation_kind: str = "") -> str:
    """What groups findings: the kind, the target, the stage and the exception
    type with its place (numbers in messages vary from case to case)."""
    if kind == "exception":
        m = re.match(r"(\w+): (\w+) at (\S+)", detail)
        return f"{kind} {target} {m.group(1)} {m.group(2)} at {m.group(3)}" if m else f"{kind} {target}"
    if kind == "opaque":
        wrapped = re.search(r"\b(\w+Error)\b(?!.*\b\w+Error\b)", detail.split(":", 2)[-1])
        op = re.search(r"\((\w{3,})\): malformed", detail)
        return f"{kind} {target} {op.group(1) if op else ''} {wrapped.group(1) if wrapped else ''}".strip()
    if kind in ("mismatch", "false-refusal", "accepted"):
        return f"{kind} {target} {detail.split(':', 1)[0]} {mutation_kind}".strip()
    stage = detail.split(":", 1)[0] if kind in ("memory", "nonfinite") else ""
    return f"{kind} {target} {stage}".strip()


def fuzz(cases: int, seconds: float, seed: int = 0, targets=("bnn", "tflite"), timeout=DEFAULT_TIMEOUT,
         as_bytes=DEFAULT_AS_BYTES, out=None, log=print, sweep=False):
    """Run up to ``cases`` cases within ``seconds`` (random mutations, or with
    ``sweep`` every single-field edit of every seed in turn); returns (counts
    by outcome, {class: [(case index, seed name, mutations, detail), ...]}, cases run)."""
    seeds = load_seeds(targets)
    sweep_iter = sweep_cases(seeds) if sweep else None
    counts = {}
    findings: dict[str, list] = {}
    t_end = time.monotonic() + seconds
    ran = 0
    with Sandbox(as_bytes, timeout) as box:
        for i in range(cases):
            if time.monotonic() >= t_end:
                break
            if sweep_iter is not None:
                case = next(sweep_iter, None)
                if case is None:
                    break
            else:
                case = make_case(seeds, seed, i)
            target, name, data, mutations, equivalence = case
            kind, detail, took = box.run(target, data, equivalence)
            ran += 1
            counts[kind] = counts.get(kind, 0) + 1
            if kind in FINDING_KINDS:
                cls = finding_class(kind, target, detail, mutations[0].split(":")[0] if equivalence else "")
                first = cls not in findings
                findings.setdefault(cls, []).append((i, name, mutations, detail))
                if first and out:
                    path = os.path.join(out, f"case{i}_{kind}.{target if target == 'tflite' else 'bnn'}")
                    with open(path, "wb") as f:
                        f.write(data)
                if first:
                    log(f"  case {i} ({name}, {took:.1f} s): {kind}: {detail[:200]}\n      after {mutations}")
    return counts, findings, ran


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", default="bnn,tflite")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds a case may take")
    ap.add_argument("--as-gib", type=float, default=DEFAULT_AS_BYTES / (1 << 30), help="address-space limit")
    ap.add_argument("--sweep", action="store_true", help="every single-field edit of every seed instead")
    ap.add_argument("--allow-known", action="store_true",
                    help="exit 0 when every finding is an open defect of KNOWN_FINDINGS (they are still listed)")
    ap.add_argument("--out", default=None, help="where the first file of each finding class is written")
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="bnnrt-mutate-")
    os.makedirs(out, exist_ok=True)
    t0 = time.monotonic()
    counts, findings, ran = fuzz(args.cases, args.seconds, args.seed, tuple(args.targets.split(",")),
                                 args.timeout, int(args.as_gib * (1 << 30)), out, sweep=args.sweep)
    took = time.monotonic() - t0
    print(f"mutate.py: {ran} cases in {took:.0f} s (seed {args.seed}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    new = 0
    for cls, hits in sorted(findings.items()):
        i, name, mutations, detail = hits[0]
        why = known_reason(cls, detail)
        new += why is None
        print(f"{'KNOWN' if why else 'FINDING'} {cls}: {len(hits)} case(s), first case {i} ({name}): {detail[:300]}")
        if why:
            print(f"    open defect: {why}")
        for m in mutations:
            print(f"    mutation: {m[:300]}")
    if findings:
        print(f"the first file of each class is in {out}")
    return 1 if new or (findings and not args.allow_known) else 0


if __name__ == "__main__":
    sys.exit(main())
