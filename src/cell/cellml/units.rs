//! CellML units: every unit reduced to a multiplier of a product of SI base
//! units, which is what deciding a connection's conversion needs.

use std::collections::HashMap;

/// The SI base dimensions, in this order: ampere, candela, kelvin, kilogram, metre, mole, second.
pub const BASE: [&str; 7] = ["ampere", "candela", "kelvin", "kilogram", "metre", "mole", "second"];

/// A unit as `multiplier · Π base^dims` (plus an `offset` for celsius-like units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub multiplier: f64,
    pub dims: [f64; 7],
    pub offset: f64,
}

impl Unit {
    pub const DIMENSIONLESS: Unit = Unit { multiplier: 1.0, dims: [0.0; 7], offset: 0.0 };

    fn base(i: usize) -> Unit {
        let mut dims = [0.0; 7];
        dims[i] = 1.0;
        Unit { multiplier: 1.0, dims, offset: 0.0 }
    }

    fn times(self, other: Unit) -> Unit {
        let mut dims = self.dims;
        for (d, o) in dims.iter_mut().zip(other.dims) {
            *d += o;
        }
        Unit { multiplier: self.multiplier * other.multiplier, dims, offset: 0.0 }
    }

    fn pow(self, e: f64) -> Unit {
        Unit { multiplier: self.multiplier.powf(e), dims: self.dims.map(|d| d * e), offset: 0.0 }
    }

    fn scaled(self, k: f64) -> Unit {
        Unit { multiplier: self.multiplier * k, ..self }
    }

    /// The factor `f` with `value in to = f · value in self`, or `None`
    /// where the dimensions differ or an offset is involved.
    pub fn factor_to(&self, to: &Unit) -> Option<f64> {
        let same = self.dims.iter().zip(&to.dims).all(|(a, b)| (a - b).abs() < 1e-9);
        (same && self.offset == 0.0 && to.offset == 0.0).then(|| self.multiplier / to.multiplier)
    }

    /// The dimensions written out (`kilogram·metre^2·second^-3`), for messages.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = BASE
            .iter()
            .zip(self.dims)
            .filter(|(_, d)| *d != 0.0)
            .map(|(b, d)| if d == 1.0 { b.to_string() } else { format!("{b}^{d}") })
            .collect();
        let dims = if parts.is_empty() { "dimensionless".to_string() } else { parts.join("·") };
        if self.multiplier == 1.0 {
            dims
        } else {
            format!("{}·{dims}", self.multiplier)
        }
    }
}

/// The SI prefixes CellML allows, by name (a number is also allowed: a power of ten).
pub fn prefix(name: &str) -> Option<f64> {
    let e = match name {
        "yotta" => 24,
        "zetta" => 21,
        "exa" => 18,
        "peta" => 15,
        "tera" => 12,
        "giga" => 9,
        "mega" => 6,
        "kilo" => 3,
        "hecto" => 2,
        "deka" | "deca" => 1,
        "deci" => -1,
        "centi" => -2,
        "milli" => -3,
        "micro" => -6,
        "nano" => -9,
        "pico" => -12,
        "femto" => -15,
        "atto" => -18,
        "zepto" => -21,
        "yocto" => -24,
        other => return other.parse::<i32>().ok().map(|e| 10f64.powi(e)),
    };
    Some(10f64.powi(e))
}

/// CellML's built-in units.
pub fn builtin(name: &str) -> Option<Unit> {
    if let Some(i) = BASE.iter().position(|b| *b == name) {
        return Some(Unit::base(i));
    }
    let [a, cd, k, kg, m, mol, s] = [0, 1, 2, 3, 4, 5, 6].map(Unit::base);
    let per = |u: Unit| u.pow(-1.0);
    let u = match name {
        "meter" => m,
        "dimensionless" | "radian" | "steradian" => Unit::DIMENSIONLESS,
        "gram" => kg.scaled(1e-3),
        "litre" | "liter" => m.pow(3.0).scaled(1e-3),
        "hertz" | "becquerel" => per(s),
        "newton" => kg.times(m).times(s.pow(-2.0)),
        "pascal" => kg.times(per(m)).times(s.pow(-2.0)),
        "joule" => kg.times(m.pow(2.0)).times(s.pow(-2.0)),
        "watt" => kg.times(m.pow(2.0)).times(s.pow(-3.0)),
        "coulomb" => s.times(a),
        "volt" => kg.times(m.pow(2.0)).times(s.pow(-3.0)).times(per(a)),
        "farad" => kg.pow(-1.0).times(m.pow(-2.0)).times(s.pow(4.0)).times(a.pow(2.0)),
        "ohm" => kg.times(m.pow(2.0)).times(s.pow(-3.0)).times(a.pow(-2.0)),
        "siemens" => kg.pow(-1.0).times(m.pow(-2.0)).times(s.pow(3.0)).times(a.pow(2.0)),
        "weber" => kg.times(m.pow(2.0)).times(s.pow(-2.0)).times(per(a)),
        "tesla" => kg.times(s.pow(-2.0)).times(per(a)),
        "henry" => kg.times(m.pow(2.0)).times(s.pow(-2.0)).times(a.pow(-2.0)),
        "celsius" => Unit { offset: 273.15, ..k },
        "lumen" => cd,
        "lux" => cd.times(m.pow(-2.0)),
        "gray" | "sievert" => m.pow(2.0).times(s.pow(-2.0)),
        "katal" => mol.times(per(s)),
        _ => return None,
    };
    Some(u)
}

/// One `<unit>` child of a `<units>` definition.
#[derive(Debug, Clone)]
pub struct Part {
    pub units: String,
    pub prefix: f64,
    pub exponent: f64,
    pub multiplier: f64,
}

/// Resolves the units defined in a model (`defs`: name → its parts) to
/// [`Unit`]s; an unknown name or a definition that refers to itself is an
/// error naming it.
pub fn resolve(defs: &HashMap<String, Vec<Part>>) -> Result<HashMap<String, Unit>, String> {
    fn go(name: &str, defs: &HashMap<String, Vec<Part>>, done: &mut HashMap<String, Unit>, path: &mut Vec<String>) -> Result<Unit, String> {
        if let Some(u) = done.get(name) {
            return Ok(*u);
        }
        let Some(parts) = defs.get(name) else {
            return builtin(name).ok_or_else(|| format!("units `{name}` are neither defined in the model nor built into CellML"));
        };
        if path.iter().any(|p| p == name) {
            return Err(format!("units `{name}` are defined in terms of themselves ({} → {name})", path.join(" → ")));
        }
        path.push(name.to_string());
        let mut u = Unit::DIMENSIONLESS;
        for p in parts {
            let inner = go(&p.units, defs, done, path)?;
            u = u.times(inner.scaled(p.prefix).pow(p.exponent).scaled(p.multiplier));
        }
        path.pop();
        done.insert(name.to_string(), u);
        Ok(u)
    }
    let mut done = HashMap::new();
    for name in defs.keys() {
        go(name, defs, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millivolts_convert_to_volts_and_not_to_seconds() {
        let mut defs = HashMap::new();
        defs.insert("mV".to_string(), vec![Part { units: "volt".into(), prefix: 1e-3, exponent: 1.0, multiplier: 1.0 }]);
        defs.insert("per_ms".to_string(), vec![Part { units: "second".into(), prefix: 1e-3, exponent: -1.0, multiplier: 1.0 }]);
        let u = resolve(&defs).unwrap();
        let volt = builtin("volt").unwrap();
        assert!((u["mV"].factor_to(&volt).unwrap() - 1e-3).abs() < 1e-18);
        assert!((u["per_ms"].factor_to(&builtin("hertz").unwrap()).unwrap() - 1e3).abs() < 1e-9);
        assert_eq!(u["mV"].factor_to(&builtin("second").unwrap()), None);
        assert!(builtin("celsius").unwrap().factor_to(&builtin("kelvin").unwrap()).is_none());
        defs.insert("loop".to_string(), vec![Part { units: "loop".into(), prefix: 1.0, exponent: 1.0, multiplier: 1.0 }]);
        assert!(resolve(&defs).unwrap_err().contains("in terms of themselves"));
    }
}
