//! CellML import (1.0, 1.1 and 2.0): components, variables, connections
//! with unit conversion, the MathML subset cell models use, read into the
//! [`Equations`] IR. Files from others are untrusted input: every refusal
//! names the file, line and element, and what to do.

mod mathml;
pub mod units;

use std::collections::HashMap;
use std::path::Path;

use roxmltree::{Document, Node};

use crate::cell::equations::{Equations, Expr, Kind, Variable};
use crate::Error;
use units::{Part, Unit};

/// Files larger than this are refused before they are read (the largest
/// models in the Physiome repository are a few MB).
pub const MAX_BYTES: u64 = 64 << 20;
/// Deepest nesting of MathML accepted (real models stay below 100).
const MAX_DEPTH: usize = 512;
/// Most variables and states accepted (Decker 2009: 48 states, a few
/// hundred variables): finding gating variables keeps a table of which
/// states each variable reads, variables × states.
pub const MAX_VARIABLES: usize = 100_000;
pub const MAX_STATES: usize = 1_000;

const NAMESPACES: [&str; 3] = ["http://www.cellml.org/cellml/1.0#", "http://www.cellml.org/cellml/1.1#", "http://www.cellml.org/cellml/2.0#"];

/// Reads the CellML file at `path`.
pub fn load(path: &Path) -> Result<Equations, Error> {
    parse_bytes(&read(path)?, path)
}

/// The bytes of the CellML file at `path` (at most [`MAX_BYTES`]: larger than any cell model).
pub fn read(path: &Path) -> Result<Vec<u8>, Error> {
    crate::fsio::read_limited(path, MAX_BYTES, "a CellML model file")
}

/// The model in `bytes`, read from `path`.
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Equations, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::format(path, format!("not UTF-8 text (byte {})", e.valid_up_to()), "save the model as UTF-8 XML"))?;
    parse(text, path)
}

/// Reads CellML text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Equations, Error> {
    let doc = Document::parse(text).map_err(|e| Error::format(path, format!("not well-formed XML: {e}"), "fix the XML (an editor or `xmllint --noout FILE` shows where)"))?;
    Reader { doc: &doc, path }.read()
}

struct Reader<'a, 'i> {
    doc: &'a Document<'i>,
    path: &'a Path,
}

/// A variable as a component declares it.
struct Var<'a, 'i> {
    comp: usize,
    name: String,
    units: String,
    initial: Option<&'a str>,
    node: Node<'a, 'i>,
}

struct Comp<'a, 'i> {
    name: String,
    vars: HashMap<String, usize>,
    node: Node<'a, 'i>,
}

enum Lhs {
    Var(usize),
    /// d var / d time-var.
    Rate(usize, usize),
}

struct Equation<'a, 'i> {
    comp: usize,
    lhs: Lhs,
    rhs: Node<'a, 'i>,
    node: Node<'a, 'i>,
}

/// The equivalence classes of connected variables.
struct Classes(Vec<usize>);

impl Classes {
    fn root(&mut self, mut v: usize) -> usize {
        while self.0[v] != v {
            self.0[v] = self.0[self.0[v]];
            v = self.0[v];
        }
        v
    }
    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        self.0[a.max(b)] = a.min(b);
    }
}

fn cellml_tag(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace().is_some_and(|ns| NAMESPACES.contains(&ns))
}

impl<'a, 'i> Reader<'a, 'i> {
    fn err(&self, node: Node, problem: impl std::fmt::Display, hint: impl Into<String>) -> Error {
        let pos = self.doc.text_pos_at(node.range().start);
        Error::format(self.path, format!("line {}, <{}>: {problem}", pos.row, node.tag_name().name()), hint)
    }

    fn attr(&self, node: Node<'a, 'i>, name: &str) -> Result<&'a str, Error> {
        node.attribute(name).ok_or_else(|| self.err(node, format!("no `{name}` attribute"), format!("give the element a {name}=\"…\"")))
    }

    fn read(&self) -> Result<Equations, Error> {
        let root = self.doc.root_element();
        let ns = root.tag_name().namespace().unwrap_or("");
        if root.tag_name().name() != "model" || !NAMESPACES.contains(&ns) {
            return Err(self.err(root, format!("not a CellML model (namespace `{ns}`)"), "give a CellML 1.0, 1.1 or 2.0 file whose root is <model xmlns=\"http://www.cellml.org/cellml/2.0#\">"));
        }
        let model_name = self.attr(root, "name")?.to_string();

        // units: the model's and the components' (1.x), one namespace of names
        let mut unit_defs: HashMap<String, Vec<Part>> = HashMap::new();
        for u in root.descendants().filter(|n| cellml_tag(n, "units")) {
            let name = self.attr(u, "name")?;
            if u.attribute("base_units") == Some("yes") {
                return Err(self.err(u, format!("units `{name}` declare a new base unit"), "express the units in SI units"));
            }
            let mut parts = Vec::new();
            for p in u.children().filter(|n| cellml_tag(n, "unit")) {
                let number = |attr: &str, default: f64| -> Result<f64, Error> {
                    p.attribute(attr).map_or(Ok(default), |v| v.trim().parse().map_err(|_| self.err(p, format!("{attr} `{v}` is not a number"), "write a decimal number")))
                };
                let prefix = match p.attribute("prefix") {
                    None => 1.0,
                    Some(v) => units::prefix(v.trim()).ok_or_else(|| self.err(p, format!("prefix `{v}` is not an SI prefix"), "use milli, micro, kilo… or a power of ten such as -3"))?,
                };
                parts.push(Part { units: self.attr(p, "units")?.to_string(), prefix, exponent: number("exponent", 1.0)?, multiplier: number("multiplier", 1.0)? });
            }
            if unit_defs.insert(name.to_string(), parts).is_some() {
                return Err(self.err(u, format!("units `{name}` are defined twice"), "rename one of them"));
            }
        }
        let units = units::resolve(&unit_defs).map_err(|e| self.err(root, e, "define the units, or use CellML's built-in units"))?;
        let unit_of = |v: &Var| -> Result<Unit, Error> {
            units.get(&v.units).copied().or_else(|| units::builtin(&v.units)).ok_or_else(|| self.err(v.node, format!("units `{}` of variable `{}` are not defined", v.units, v.name), "define them in a <units> element or use a built-in unit"))
        };

        if let Some(i) = root.descendants().find(|n| cellml_tag(n, "import")) {
            return Err(self.err(i, "imports of other CellML files are not supported", "flatten the model first (libcellml's Importer and Analyser, or load and export it with Myokit)"));
        }

        // components and their variables
        let mut comps: Vec<Comp> = Vec::new();
        let mut vars: Vec<Var> = Vec::new();
        for c in root.children().filter(|n| cellml_tag(n, "component")) {
            let name = self.attr(c, "name")?.to_string();
            if comps.iter().any(|k| k.name == name) {
                return Err(self.err(c, format!("component `{name}` is defined twice"), "rename one of them"));
            }
            if let Some(r) = c.children().find(|n| cellml_tag(n, "reaction")) {
                return Err(self.err(r, "CellML 1.0 reactions are not supported", "write the reaction's rates as equations"));
            }
            let mut names = HashMap::new();
            for v in c.children().filter(|n| cellml_tag(n, "variable")) {
                let vname = self.attr(v, "name")?.to_string();
                let units = self.attr(v, "units")?.to_string();
                if names.insert(vname.clone(), vars.len()).is_some() {
                    return Err(self.err(v, format!("variable `{vname}` is declared twice in component `{name}`"), "rename one of them"));
                }
                vars.push(Var { comp: comps.len(), name: vname, units, initial: v.attribute("initial_value"), node: v });
            }
            comps.push(Comp { name, vars: names, node: c });
        }
        if vars.len() > MAX_VARIABLES {
            return Err(self.err(root, format!("{} variables, more than any cell model ({MAX_VARIABLES} at most)", vars.len()), "check that this is a single cell model"));
        }
        let full = |v: &Var| format!("{}.{}", comps[v.comp].name, v.name);

        // connections join variables into classes
        let mut classes = Classes((0..vars.len()).collect());
        let comp_index = |node: Node<'a, 'i>, name: &str| comps.iter().position(|c| c.name == name).ok_or_else(|| self.err(node, format!("no component `{name}`"), "connect components the model defines"));
        for conn in root.children().filter(|n| cellml_tag(n, "connection")) {
            // 2.0 names the components on the connection, 1.x in a map_components child
            let holder = conn.children().find(|n| cellml_tag(n, "map_components")).unwrap_or(conn);
            let (c1, c2) = (comp_index(holder, self.attr(holder, "component_1")?)?, comp_index(holder, self.attr(holder, "component_2")?)?);
            for m in conn.children().filter(|n| cellml_tag(n, "map_variables")) {
                let find = |c: usize, attr: &str| -> Result<usize, Error> {
                    let name = self.attr(m, attr)?;
                    comps[c].vars.get(name).copied().ok_or_else(|| self.err(m, format!("component `{}` has no variable `{name}`", comps[c].name), "map variables the components declare"))
                };
                classes.join(find(c1, "variable_1")?, find(c2, "variable_2")?);
            }
        }

        // equations
        let mut eqs: Vec<Equation> = Vec::new();
        for (ci, c) in comps.iter().enumerate() {
            for math in c.node.children().filter(|n| n.is_element() && n.tag_name().name() == "math") {
                if math.tag_name().namespace() != Some(mathml::NS) {
                    return Err(self.err(math, "math outside the MathML namespace", "declare xmlns=\"http://www.w3.org/1998/Math/MathML\" on <math>"));
                }
                for eq in mathml::children(math) {
                    eqs.push(self.equation(ci, c, eq)?);
                }
            }
        }
        for e in &eqs {
            self.check_depth(e.rhs)?;
        }

        // what each class is
        let n = vars.len();
        let roots: Vec<usize> = (0..n).map(|v| classes.root(v)).collect();
        let mut defining: Vec<Option<usize>> = vec![None; n]; // class root → equation
        for (k, e) in eqs.iter().enumerate() {
            let (Lhs::Var(target) | Lhs::Rate(target, _)) = e.lhs;
            if defining[roots[target]].replace(k).is_some() {
                return Err(self.err(e.node, format!("`{}` is defined by a second equation", full(&vars[target])), "keep one equation for each variable"));
            }
        }
        let mut time_root = None;
        for e in &eqs {
            if let Lhs::Rate(_, t) = e.lhs {
                match time_root {
                    None => time_root = Some(roots[t]),
                    Some(r) if r != roots[t] => return Err(self.err(e.node, format!("a second free variable, `{}`", full(&vars[t])), "differentiate every state by the same time variable")),
                    _ => {}
                }
            }
        }
        let Some(time_root) = time_root else {
            return Err(self.err(root, "the model has no differential equations", "a cell model needs at least one state variable (an equation with <diff/>)"));
        };
        if let Some(k) = defining[time_root] {
            return Err(self.err(eqs[k].node, "the free variable (time) is given an equation", "time is the variable states are differentiated by; remove its equation"));
        }

        // each class's defining variable: its equation's, else the first with a value, else its first
        let mut canonical: Vec<Option<usize>> = vec![None; n];
        for (k, e) in eqs.iter().enumerate() {
            let (Lhs::Var(v) | Lhs::Rate(v, _)) = e.lhs;
            if defining[roots[v]] == Some(k) {
                canonical[roots[v]] = Some(v);
            }
        }
        for (v, var) in vars.iter().enumerate() {
            if var.initial.is_some() && canonical[roots[v]].is_none() {
                canonical[roots[v]] = Some(v);
            }
        }
        for v in 0..n {
            canonical[roots[v]].get_or_insert(v);
        }
        let var_units: Vec<Unit> = vars.iter().map(unit_of).collect::<Result<_, _>>()?;
        // local value = factor · the class's value (in the defining variable's units)
        let mut factor = vec![1.0; n];
        for v in 0..n {
            let c = canonical[roots[v]].expect("every class has a variable");
            let (from, to) = (var_units[c], var_units[v]);
            factor[v] = from.factor_to(&to).ok_or_else(|| {
                self.err(vars[v].node, format!("`{}` in {} is connected to `{}` in {}: no conversion between them ({} vs {})", full(&vars[v]), vars[v].units, full(&vars[c]), vars[c].units, to.describe(), from.describe()), "give connected variables units of the same dimension")
            })?;
        }

        // the IR's variables, one per class (time apart), in the order the file declares them
        let mut index: Vec<Option<usize>> = vec![None; n];
        let mut out_vars: Vec<Variable> = Vec::new();
        let mut states = Vec::new();
        let mut params = Vec::new();
        for v in 0..n {
            let r = roots[v];
            if r == time_root || canonical[r] != Some(v) {
                continue;
            }
            let var = &vars[v];
            let initial = self.initial_value(r, &roots, &vars, &comps, &factor, &mut Vec::new())?;
            let kind = match defining[r] {
                Some(k) => match eqs[k].lhs {
                    Lhs::Rate(..) => {
                        let Some(initial) = initial else {
                            return Err(self.err(var.node, format!("state `{}` has no initial value", full(var)), "give the variable an initial_value"));
                        };
                        states.push(out_vars.len());
                        Kind::State { initial }
                    }
                    Lhs::Var(_) => Kind::Algebraic,
                },
                None => match initial {
                    Some(value) => {
                        params.push(out_vars.len());
                        Kind::Param { value }
                    }
                    None => return Err(self.err(var.node, format!("`{}` has no value: neither an initial value nor an equation", full(var)), "give it an initial_value, an equation, or connect it to a variable that has one")),
                },
            };
            index[r] = Some(out_vars.len());
            out_vars.push(Variable { name: full(var), units: var.units.clone(), kind });
        }

        if states.len() > MAX_STATES {
            return Err(self.err(root, format!("{} state variables, more than any cell model ({MAX_STATES} at most)", states.len()), "check that this is a single cell model"));
        }

        // expressions, each in its component's names and units
        let mut algebraic: Vec<(usize, Expr, usize)> = Vec::new();
        let mut rates = vec![Expr::Num(0.0); states.len()];
        for (k, e) in eqs.iter().enumerate() {
            let names = Names { comp: &comps[e.comp], roots: &roots, index: &index, time_root, factor: &factor };
            let rhs = mathml::expr(e.rhs, &names).map_err(|m| self.err(m.node, m.problem, m.hint))?;
            match e.lhs {
                Lhs::Var(v) => algebraic.push((index[roots[v]].expect("defined variables are indexed"), rhs.scaled(1.0 / factor[v]), k)),
                Lhs::Rate(v, t) => {
                    let i = index[roots[v]].expect("states are indexed");
                    let s = states.iter().position(|&s| s == i).expect("a rate's variable is a state");
                    // d(class)/d(class time) = (f_t / f_v) · d(local)/d(local time)
                    rates[s] = rhs.scaled(factor[t] / factor[v]);
                }
            }
        }
        let mut algebraic = self.order(algebraic, &out_vars, &eqs)?;
        // a variable given by a constant expression (`stim_amplitude = -80`) is a parameter a study may vary
        algebraic.retain(|(v, e)| {
            let constant = e.is_constant();
            if constant {
                out_vars[*v].kind = Kind::Param { value: e.eval(&[], 0.0) };
                params.push(*v);
            }
            !constant
        });
        params.sort_unstable();
        let tv = &vars[canonical[time_root].unwrap()];
        Ok(Equations { name: model_name, time: (full(tv), tv.units.clone()), vars: out_vars, states, rates, params, algebraic })
    }

    /// One `<apply><eq/> lhs rhs</apply>` of component `ci`.
    fn equation(&self, ci: usize, c: &Comp<'a, 'i>, eq: Node<'a, 'i>) -> Result<Equation<'a, 'i>, Error> {
        let parts: Vec<Node> = mathml::children(eq).collect();
        if eq.tag_name().name() != "apply" || parts.len() != 3 || parts[0].tag_name().name() != "eq" {
            return Err(self.err(eq, "not an equation", "each child of <math> is <apply><eq/> left right</apply>"));
        }
        let local = |n: Node<'a, 'i>| -> Result<usize, Error> {
            let name = n.text().unwrap_or("").trim();
            c.vars.get(name).copied().ok_or_else(|| self.err(n, format!("`{name}` is not a variable of component `{}`", c.name), "declare it in the component"))
        };
        let lhs = parts[1];
        let lhs = match lhs.tag_name().name() {
            "ci" => Lhs::Var(local(lhs)?),
            "apply" => {
                let inner: Vec<Node> = mathml::children(lhs).collect();
                let bvar = inner.iter().find(|n| n.tag_name().name() == "bvar");
                match (inner.first().map(|n| n.tag_name().name()), bvar, inner.last()) {
                    (Some("diff"), Some(b), Some(x)) if x.tag_name().name() == "ci" => {
                        if let Some(d) = b.children().find(|n| n.tag_name().name() == "degree") {
                            return Err(self.err(d, "a higher derivative", "write the model as first-order equations"));
                        }
                        let t = mathml::children(*b).find(|n| n.tag_name().name() == "ci").ok_or_else(|| self.err(*b, "a bvar without a variable", "write <bvar><ci>time</ci></bvar>"))?;
                        Lhs::Rate(local(*x)?, local(t)?)
                    }
                    _ => return Err(self.err(lhs, "the left side is neither a variable nor its derivative", "write `x = …` or `d(x)/d(time) = …`")),
                }
            }
            _ => return Err(self.err(lhs, "the left side is neither a variable nor its derivative", "write `x = …` or `d(x)/d(time) = …`")),
        };
        Ok(Equation { comp: ci, lhs, rhs: parts[2], node: eq })
    }

    /// Refuses MathML nested deeper than [`MAX_DEPTH`] (before recursing into it).
    fn check_depth(&self, node: Node<'a, 'i>) -> Result<(), Error> {
        let mut stack = vec![(node, 0usize)];
        while let Some((n, d)) = stack.pop() {
            if d > MAX_DEPTH {
                return Err(self.err(n, format!("MathML nested more than {MAX_DEPTH} deep"), "this is not a cell model's equation; check the file"));
            }
            stack.extend(n.children().filter(|c| c.is_element()).map(|c| (c, d + 1)));
        }
        Ok(())
    }

    /// The class's initial value in the class's units, from whichever of its
    /// variables has one; `naming` holds the classes whose initial values
    /// name others on the way here (a loop of names is an error, not a recursion without end).
    #[allow(clippy::too_many_arguments)]
    fn initial_value(&self, root: usize, roots: &[usize], vars: &[Var<'a, 'i>], comps: &[Comp], factor: &[f64], naming: &mut Vec<usize>) -> Result<Option<f64>, Error> {
        let mut found: Option<(f64, usize)> = None;
        for (v, var) in vars.iter().enumerate().filter(|(v, _)| roots[*v] == root) {
            let Some(text) = var.initial else { continue };
            let local = match text.trim().parse::<f64>() {
                Ok(x) => x,
                // CellML 2.0: the name of a constant in the same component
                Err(_) => {
                    let c = &comps[var.comp];
                    let Some(&w) = c.vars.get(text.trim()) else {
                        return Err(self.err(var.node, format!("initial_value `{text}` is neither a number nor a variable of component `{}`", c.name), "write a number, or the name of a constant in the same component"));
                    };
                    if roots[w] == root {
                        return Err(self.err(var.node, format!("initial_value `{text}` is the variable itself"), "write a number"));
                    }
                    if naming.contains(&roots[w]) {
                        return Err(self.err(var.node, format!("initial_value `{text}` names a variable whose initial value names this one, in a loop"), "write a number for one of them"));
                    }
                    naming.push(root);
                    let named = self.initial_value(roots[w], roots, vars, comps, factor, naming)?;
                    naming.pop();
                    match named {
                        Some(x) => x * factor[w],
                        None => return Err(self.err(var.node, format!("initial_value `{text}` names a variable without a value"), "name a constant with an initial_value")),
                    }
                }
            };
            let value = local / factor[v];
            if let Some((prev, _)) = found {
                if (prev - value).abs() > 1e-12 * prev.abs().max(value.abs()) {
                    return Err(self.err(var.node, format!("a second initial value ({value} against {prev}) for connected variables"), "give the initial value in one place"));
                }
            }
            found = Some((value, v));
        }
        Ok(found.map(|(x, _)| x))
    }

    /// Algebraic equations ordered so each comes after everything it reads; a loop is an error naming it.
    fn order(&self, algebraic: Vec<(usize, Expr, usize)>, out_vars: &[Variable], eqs: &[Equation]) -> Result<Vec<(usize, Expr)>, Error> {
        let mut by_var: HashMap<usize, usize> = HashMap::new();
        for (k, (v, _, _)) in algebraic.iter().enumerate() {
            by_var.insert(*v, k);
        }
        let mut state = vec![0u8; algebraic.len()]; // 0 new, 1 on the path, 2 done
        let mut order = Vec::with_capacity(algebraic.len());
        for start in 0..algebraic.len() {
            if state[start] != 0 {
                continue;
            }
            // iterative depth-first search: (equation, its dependencies, next to visit)
            let deps = |k: usize| {
                let mut d = Vec::new();
                algebraic[k].1.visit_vars(&mut |v| {
                    if let Some(&j) = by_var.get(&v) {
                        d.push(j);
                    }
                });
                d
            };
            let mut stack = vec![(start, deps(start), 0usize)];
            state[start] = 1;
            while let Some((k, d, next)) = stack.last_mut() {
                if *next < d.len() {
                    let j = d[*next];
                    *next += 1;
                    match state[j] {
                        0 => {
                            state[j] = 1;
                            let dj = deps(j);
                            stack.push((j, dj, 0));
                        }
                        1 => {
                            let at = stack.iter().position(|(s, _, _)| *s == j).unwrap_or(0);
                            let mut path: Vec<&str> = stack[at..].iter().map(|(s, _, _)| out_vars[algebraic[*s].0].name.as_str()).collect();
                            path.push(&out_vars[algebraic[j].0].name);
                            return Err(self.err(eqs[algebraic[j].2].node, format!("an algebraic loop: {}", path.join(" → ")), "break the loop (excite solves explicit equations only)"));
                        }
                        _ => {}
                    }
                } else {
                    state[*k] = 2;
                    order.push(*k);
                    stack.pop();
                }
            }
        }
        let mut slots: Vec<Option<(usize, Expr)>> = algebraic.into_iter().map(|(v, e, _)| Some((v, e))).collect();
        Ok(order.into_iter().map(|k| slots[k].take().expect("each once")).collect())
    }
}

/// How a component's `ci` names resolve.
struct Names<'r, 'a, 'i> {
    comp: &'r Comp<'a, 'i>,
    roots: &'r [usize],
    index: &'r [Option<usize>],
    time_root: usize,
    factor: &'r [f64],
}

impl mathml::Names for Names<'_, '_, '_> {
    fn resolve(&self, name: &str) -> Option<Expr> {
        let v = *self.comp.vars.get(name)?;
        let r = self.roots[v];
        let e = if r == self.time_root { Expr::Time } else { Expr::Var(self.index[r]?) };
        Some(e.scaled(self.factor[v]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATH: &str = "xmlns=\"http://www.w3.org/1998/Math/MathML\"";

    fn doc(body: &str) -> String {
        format!("<?xml version='1.0'?>\n<model xmlns=\"http://www.cellml.org/cellml/2.0#\" xmlns:cellml=\"http://www.cellml.org/cellml/2.0#\" name=\"m\">\n<units name=\"mV\"><unit prefix=\"milli\" units=\"volt\"/></units>\n<units name=\"ms\"><unit prefix=\"milli\" units=\"second\"/></units>\n<units name=\"per_ms\"><unit units=\"ms\" exponent=\"-1\"/></units>\n{body}\n</model>")
    }

    fn read(body: &str) -> Result<Equations, Error> {
        parse(&doc(body), Path::new("m.cellml"))
    }

    /// The membrane in mV and ms; a second component sees V in volts and time
    /// in seconds, and integrates a state of its own in seconds.
    const TWO_UNITS: &str = r#"
<component name="membrane">
  <variable name="time" units="ms" interface="public"/>
  <variable name="V" units="mV" initial_value="-80" interface="public"/>
  <variable name="k" units="per_ms" initial_value="0.5"/>
  <variable name="I" units="volt" interface="public"/>
  <math MATH><apply><eq/><apply><diff/><bvar><ci>time</ci></bvar><ci>V</ci></apply>
    <apply><times/><ci>k</ci><apply><minus/><cn cellml:units="mV">-70</cn><ci>V</ci></apply></apply></apply></math>
</component>
<component name="probe">
  <variable name="t" units="second" interface="public"/>
  <variable name="V" units="volt" interface="public"/>
  <variable name="I" units="volt" interface="public"/>
  <variable name="q" units="volt" initial_value="2"/>
  <math MATH>
    <apply><eq/><ci>I</ci><apply><times/><cn cellml:units="dimensionless">3</cn><ci>V</ci></apply></apply>
    <apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>q</ci></apply><apply><plus/><ci>V</ci><ci>t</ci></apply></apply>
  </math>
</component>
<connection component_1="membrane" component_2="probe">
  <map_variables variable_1="time" variable_2="t"/>
  <map_variables variable_1="V" variable_2="V"/>
  <map_variables variable_1="I" variable_2="I"/>
</connection>"#;

    #[test]
    fn connections_convert_units() {
        let eq = read(&TWO_UNITS.replace("MATH", MATH)).unwrap();
        assert_eq!(eq.time, ("membrane.time".to_string(), "ms".to_string()));
        let names: Vec<&str> = eq.states.iter().map(|&s| eq.vars[s].name.as_str()).collect();
        assert_eq!(names, ["membrane.V", "probe.q"]);
        assert_eq!(eq.initial_state(), [-80.0, 2.0]);
        let (t, state) = (1500.0, [-60.0, 2.0]);
        let rates = eq.rates(t, &state, &eq.param_values());
        // dV/dt in mV/ms
        assert!((rates[0] - 0.5 * (-70.0 + 60.0)).abs() < 1e-12);
        // dq/dt in V/ms: (V in volts + t in seconds) per second, / 1000
        assert!((rates[1] - (-0.060 + 1.5) / 1000.0).abs() < 1e-15, "{}", rates[1]);
        // I is defined in probe (volts) as 3·V
        let vals = eq.values(t, &state, &eq.param_values());
        let i = eq.find("I").expect("one I");
        assert_eq!(eq.vars[i].name, "probe.I");
        assert!((vals[i] - 3.0 * -0.060).abs() < 1e-15);
    }

    /// Roots with a degree, logs with a base, e-notation, piecewise with
    /// conditions joined by `and`, constants.
    #[test]
    fn the_mathml_subset_evaluates() {
        let body = r#"
<component name="c">
  <variable name="t" units="ms"/>
  <variable name="x" units="dimensionless" initial_value="0"/>
  <math MATH><apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>x</ci></apply>
    <apply><plus/>
      <apply><root/><degree><cn cellml:units="dimensionless">3</cn></degree><cn cellml:units="dimensionless">8</cn></apply>
      <apply><log/><logbase><cn cellml:units="dimensionless">2</cn></logbase><cn cellml:units="dimensionless">8</cn></apply>
      <cn cellml:units="dimensionless" type="e-notation">1.5<sep/>-3</cn>
      <apply><root/><cn cellml:units="dimensionless">16</cn></apply>
      <apply><cos/><pi/></apply>
      <piecewise>
        <piece><cn cellml:units="dimensionless">10</cn><apply><and/><apply><lt/><ci>t</ci><cn cellml:units="ms">1</cn></apply><apply><geq/><ci>t</ci><cn cellml:units="ms">0</cn></apply></apply></piece>
        <otherwise><cn cellml:units="dimensionless">20</cn></otherwise>
      </piecewise>
    </apply></apply></math>
</component>"#;
        let eq = read(&body.replace("MATH", MATH)).unwrap();
        let at = |t: f64| eq.rates(t, &[0.0], &[])[0];
        assert!((at(0.5) - (2.0 + 3.0 + 1.5e-3 + 4.0 - 1.0 + 10.0)).abs() < 1e-12, "{}", at(0.5));
        assert!((at(1.0) - (2.0 + 3.0 + 1.5e-3 + 4.0 - 1.0 + 20.0)).abs() < 1e-12, "{}", at(1.0));
        // and the compiled program agrees
        let p = crate::cell::program::Program::compile(&eq, &[None]);
        let mut regs = vec![0.0; p.n_regs * 4];
        for &(r, v) in &p.consts {
            regs[r as usize * 4..(r as usize + 1) * 4].fill(v);
        }
        p.run_setup::<4>(&mut regs);
        regs[p.time as usize * 4..(p.time as usize + 1) * 4].copy_from_slice(&[0.5, 1.0, -1.0, 3.0]);
        p.run::<4>(&mut regs);
        let rate = &regs[p.rates[0] as usize * 4..(p.rates[0] as usize + 1) * 4];
        for (t, r) in [0.5, 1.0, -1.0, 3.0].iter().zip(rate) {
            assert!((r - at(*t)).abs() < 1e-12, "t = {t}: {r} vs {}", at(*t));
        }
    }

    /// Each mistake is refused with the line, the element and what is wrong.
    #[test]
    fn bad_models_are_named() {
        let ok = TWO_UNITS.replace("MATH", MATH);
        let cases: Vec<(String, &str)> = vec![
            (ok.replacen("</math>", "", 1), "not well-formed XML"),
            (ok.replace("<ci>k</ci>", "<apply><sum/><ci>k</ci></apply>"), "<sum> is outside the MathML subset"),
            (ok.replace("<variable name=\"k\" units=\"per_ms\" initial_value=\"0.5\"/>", "<variable name=\"k\" units=\"per_ms\"/>"), "`membrane.k` has no value"),
            (ok.replace("initial_value=\"-80\" ", ""), "state `membrane.V` has no initial value"),
            (ok.replace("<variable name=\"t\" units=\"second\"", "<variable name=\"t\" units=\"volt\""), "no conversion"),
            (ok.replace("<variable name=\"q\" units=\"volt\" initial_value=\"2\"/>", "<variable name=\"q\" units=\"volt\" initial_value=\"2\"/><variable name=\"q\" units=\"volt\"/>"), "declared twice"),
            (ok.replace("<ci>t</ci></apply></apply>\n  </math>", "<ci>t</ci></apply></apply><apply><eq/><ci>I</ci><ci>V</ci></apply>\n  </math>"), "second equation"),
            (ok.replace("<cn cellml:units=\"dimensionless\">3</cn><ci>V</ci>", "<cn cellml:units=\"dimensionless\">3</cn><ci>I</ci>"), "algebraic loop: probe.I → probe.I"),
            (ok.replace("<ci>t</ci></apply></apply>", "<ci>nope</ci></apply></apply>"), "`nope` is not a variable"),
            (ok.replace("units=\"per_ms\"", "units=\"furlong\""), "units `furlong`"),
            (ok.replace("<component name=\"probe\">", "<import href=\"x.cellml\"/><component name=\"probe\">"), "imports"),
        ];
        for (body, says) in cases {
            let e = match read(&body) {
                Ok(_) => panic!("read, though it should say `{says}`"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(says), "expected `{says}` in: {e}");
            assert!(e.contains("m.cellml"), "names the file: {e}");
            if !says.starts_with("not well-formed") {
                assert!(e.contains("line ") && e.contains(", <"), "names line and element: {e}");
            }
        }
        // two equations that need each other
        let looped = ok.replace(
            "<apply><eq/><ci>I</ci><apply><times/><cn cellml:units=\"dimensionless\">3</cn><ci>V</ci></apply></apply>",
            "<apply><eq/><ci>I</ci><ci>J</ci></apply><apply><eq/><ci>J</ci><ci>I</ci></apply>",
        )
        .replace("<variable name=\"q\"", "<variable name=\"J\" units=\"volt\"/><variable name=\"q\"");
        let e = read(&looped).unwrap_err().to_string();
        assert!(e.contains("algebraic loop") && e.contains("probe.I") && e.contains("probe.J"), "{e}");
        // initial values that name each other
        let named = ok.replace("<variable name=\"q\" units=\"volt\" initial_value=\"2\"/>", "<variable name=\"q\" units=\"volt\" initial_value=\"a\"/><variable name=\"a\" units=\"volt\" initial_value=\"b\"/><variable name=\"b\" units=\"volt\" initial_value=\"a\"/>");
        let e = read(&named).unwrap_err().to_string();
        assert!(e.contains("in a loop"), "{e}");
        // more state variables than any cell model
        let many: String = (0..=MAX_STATES).map(|i| format!("<variable name=\"s{i}\" units=\"ms\" initial_value=\"0\"/>")).collect::<String>()
            + "<math MATH>"
            + &(0..=MAX_STATES).map(|i| format!("<apply><eq/><apply><diff/><bvar><ci>t</ci></bvar><ci>s{i}</ci></apply><cn cellml:units=\"ms\">1</cn></apply>")).collect::<String>()
            + "</math>";
        let e = read(&format!("<component name=\"c\"><variable name=\"t\" units=\"ms\"/>{}</component>", many.replace("MATH", MATH))).unwrap_err().to_string();
        assert!(e.contains("1001 state variables"), "{e}");
        // not CellML at all, nesting no model has, a file too large to be a model
        let e = parse("<html/>", Path::new("m.cellml")).unwrap_err().to_string();
        assert!(e.contains("not a CellML model"), "{e}");
        let deep = format!("{}<ci>V</ci>{}", "<apply><abs/>".repeat(600), "</apply>".repeat(600));
        let e = read(&ok.replace("<apply><times/><cn cellml:units=\"dimensionless\">3</cn><ci>V</ci></apply>", &deep)).unwrap_err().to_string();
        assert!(e.contains("nested more than"), "{e}");
    }
}
