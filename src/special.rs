//! Special functions in f64 that several layers evaluate the same way: the
//! trainer's GELU, the reference interpreter's `Erf` and the native engine's
//! accuracy checks all call this one `erf`.

/// erf from the Numerical Recipes Chebyshev fit of erfc (relative error < 1.2e-7).
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = 1.0 - t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        -r
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2) to 10 digits (Abramowitz and Stegun, table 7.1)
        for (x, want) in [(0.5, 0.5204998778), (1.0, 0.8427007929), (2.0, 0.9953222650)] {
            assert!((super::erf(x) - want).abs() < 2e-7, "erf({x})");
            assert!((super::erf(-x) + want).abs() < 2e-7, "erf(-{x})");
        }
        assert!(super::erf(0.0).abs() < 1e-7);
    }
}
