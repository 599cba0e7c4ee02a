"""The coefficients of the exponential's polynomial (cell::program::EXP_POLY):
e^r on |r| <= ln 2 / 2 as 1 + r + r^2 q(r), q the Chebyshev fit of degree 9
to (e^r - 1 - r) / r^2 at 50 digits (mpmath), printed highest power first as
doubles, with the largest relative error of the rounded polynomial against
e^r on a fine grid (evaluated exactly: what is left for the FMAs to round).

usage: python3 scripts/exp_poly.py   (needs mpmath: pip install mpmath)
"""
import mpmath as mp

mp.mp.dps = 50
HALF_LN2 = mp.log(2) / 2


def q(r):
    # (e^r - 1 - r) / r^2, its series near 0 where the quotient cancels
    if abs(r) < mp.mpf("1e-10"):
        return mp.mpf(1) / 2 + r / 6 + r * r / 24
    return (mp.exp(r) - 1 - r) / (r * r)


# a hair wider than the range so that its ends are fitted too
poly = mp.chebyfit(q, [-HALF_LN2 * 1.0001, HALF_LN2 * 1.0001], 10)
coefs = [float(c) for c in poly] + [1.0, 1.0]
worst = 0
for i in range(-2000, 2001):
    r = HALF_LN2 * i / 2000
    p = mp.mpf(0)
    for c in coefs:
        p = p * r + mp.mpf(c)
    worst = max(worst, abs(p / mp.exp(r) - 1))
for c in coefs:
    print(repr(c))
print("largest relative error", mp.nstr(worst, 3))
