"""fastattn's benchmark report: one self-contained HTML page (inline CSS and SVG, no scripts).

It reads the Google Benchmark JSON written by fastattn_bench and the accuracy sweep written by
fastattn_accuracy, and answers: which method, at which N and m, beats exact attention by how
much, at what error, on which kind of inputs.

    python3 bench/report.py --bench bench.json --accuracy accuracy.json \\
        [--bench-openblas other_bench.json] [--peers peers.json] --out index.html \\
        [--markdown headline.md] [--check]

(or PYTHONPATH=bench python3 -m report ...). Needs matplotlib (Debian: python3-matplotlib) for
the figures, otherwise the standard library. Missing data is shown as "—" and never stops the
report.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Optional

if importlib.util.find_spec("matplotlib") is None:  # the figures need it: say how to get it
    sys.exit(f"report: matplotlib is not installed for {sys.executable}: install Debian's "
             "python3-matplotlib (scripts/install-deps.sh) and run the report with the Python "
             "that has it (/usr/bin/python3 on Debian; CMake: -DFASTATTN_REPORT_PYTHON=...)")

from .analysis import forward_methods  # noqa: E402
from .check import check_page  # noqa: E402
from .data import (InputError, Report, config_int, load_json, merged_methods,  # noqa: E402
                   parse_accuracy, parse_bench)
from .page import render_markdown, render_page  # noqa: E402
from .peers import load_peers  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, help="Google Benchmark JSON of fastattn_bench")
    p.add_argument("--accuracy", required=True, help="accuracy.json of fastattn_accuracy")
    p.add_argument("--bench-openblas", help="the same benchmarks built with OpenBLAS as GEMM")
    p.add_argument("--peers", help="peers.json of scripts/bench-peers.sh (must exist): adds the "
                   "section 'fastattn and other CPU attention implementations'")
    p.add_argument("--peers-if-present", action="append", default=[], metavar="PATH",
                   help="as --peers, from the first of these paths that exists, and no section "
                   "if none does (repeatable; the report target passes its candidates)")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--markdown", help="also write the headline table as GitHub markdown here")
    p.add_argument("--check", action="store_true",
                   help="re-read the page and fail unless it is complete and clean")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """Reads the inputs, writes the page (and markdown), optionally checks the page."""
    args = parse_args(argv)
    try:
        bench_data = load_json(args.bench, "benchmark")
        acc_data = load_json(args.accuracy, "accuracy")
        blas_data = load_json(args.bench_openblas, "OpenBLAS benchmark") \
            if args.bench_openblas else None
        meta = merged_methods({args.bench: bench_data, args.accuracy: acc_data,
                               args.bench_openblas or "": blas_data})
        peers = load_peers(args.peers, args.peers_if_present)
    except InputError as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    bench, acc = parse_bench(bench_data, meta), parse_accuracy(acc_data, meta)
    blas = parse_bench(blas_data, meta) if blas_data is not None else None
    rep = Report(bench, acc, blas, meta, n_head=config_int(acc.config, "N_timed", 4096),
                 n_default=config_int(acc.config, "N_default", 1024),
                 m_default=config_int(acc.config, "m_default", 256), peers=peers)
    page = render_page(rep)
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(page)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(render_markdown(rep))
    except OSError as e:
        print(f"report.py: cannot write: {e}", file=sys.stderr)
        return 1
    print(f"report.py: wrote {args.out}" + (f" and {args.markdown}" if args.markdown else "")
          + (f" (peers: {peers['_path']})" if peers is not None else ""))
    if args.check:
        methods = meta.order(forward_methods(bench) + acc.methods + forward_methods(blas))
        problems = check_page(args.out, methods, rep)
        for p in problems:
            print(f"report.py --check: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"report.py --check: {args.out} is complete ({len(methods)} methods, "
              f"{len(acc.regimes)} regimes, {page.count('<svg')} SVG elements"
              + (", peers section" if peers is not None else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
