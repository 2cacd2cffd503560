#!/usr/bin/env python3
"""Regenerates the exp2 polynomial coefficients of include/fastattn/detail/simd/exp2.hpp.

Minimax polynomial p of the given degree for 2^f on [-1/2, 1/2], minimizing the maximum relative
error |p(f) - 2^f| / 2^f, by the Remez exchange algorithm in 60-digit decimal arithmetic (standard
library only). Usage: scripts/exp2_minimax.py 5 11   (the degrees used for float and double).
"""
import math
import sys
from decimal import Decimal, getcontext

getcontext().prec = 60
LN2 = Decimal(2).ln()


def exp2(x):
    return (x * LN2).exp()


def horner(coef, x):
    p = Decimal(0)
    for c in reversed(coef):
        p = p * x + c
    return p


def solve(a):
    """Gauss-Jordan elimination with partial pivoting on an augmented n x (n+1) matrix."""
    n = len(a)
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(a[r][c]))
        a[c], a[p] = a[p], a[c]
        for r in range(n):
            if r != c:
                fac = a[r][c] / a[c][c]
                a[r] = [a[r][k] - fac * a[c][k] for k in range(n + 1)]
    return [a[i][n] / a[i][i] for i in range(n)]


def remez(degree, lo=Decimal("-0.5"), hi=Decimal("0.5"), iterations=12, grid=4000):
    m = degree + 2  # reference points: degree + 1 coefficients and the levelled error
    xs = [(lo + hi) / 2 + (hi - lo) / 2 * Decimal(math.cos(math.pi * (m - 1 - i) / (m - 1)))
          for i in range(m)]
    for _ in range(iterations):
        # p(x_i) - 2^x_i = (-1)^i E 2^x_i: equioscillating relative error E at the reference points.
        rows = [[x ** k for k in range(degree + 1)] + [Decimal((-1) ** i) * exp2(x), exp2(x)]
                for i, x in enumerate(xs)]
        coef = solve(rows)[: degree + 1]
        pts = [lo + (hi - lo) * Decimal(i) / Decimal(grid) for i in range(grid + 1)]
        errs = [(horner(coef, x) - exp2(x)) / exp2(x) for x in pts]
        runs, cur = [], [0]  # one extremum per run of equal sign
        for i in range(1, len(pts)):
            if (errs[i] >= 0) == (errs[cur[0]] >= 0):
                cur.append(i)
            else:
                runs.append(cur)
                cur = [i]
        runs.append(cur)
        ext = [max(r, key=lambda i: abs(errs[i])) for r in runs]
        if len(ext) != m:
            ext = sorted(sorted(ext, key=lambda i: -abs(errs[i]))[:m])
        xs = [pts[i] for i in ext]
    return coef, max(abs(e) for e in errs)


if __name__ == "__main__":
    for degree in map(int, sys.argv[1:] or ["5", "11"]):
        coef, err = remez(degree)
        print(f"degree {degree}: max relative error {float(err):.3e}")
        for c in coef:
            print(f"  {c:.20e}")
