//! The MathML subset CellML files use, read into [`Expr`]s.

use roxmltree::Node;

use crate::cell::equations::{Expr, Func};

/// The MathML namespace.
pub const NS: &str = "http://www.w3.org/1998/Math/MathML";

/// Why an element could not be read: the element and what is wrong.
pub struct MathError<'a, 'i> {
    pub node: Node<'a, 'i>,
    pub problem: String,
    pub hint: &'static str,
}

type Res<'a, 'i, T> = Result<T, MathError<'a, 'i>>;

fn fail<'a, 'i, T>(node: Node<'a, 'i>, problem: impl Into<String>, hint: &'static str) -> Res<'a, 'i, T> {
    Err(MathError { node, problem: problem.into(), hint })
}

const SUBSET: &str = "use the MathML subset CellML models use (apply, ci, cn, piecewise; plus, minus, times, divide, power, root, exp, ln, log, floor, ceiling, abs, trigonometric functions, comparisons, and, or, not)";

/// The element children of `node` (comments, whitespace and annotations skipped).
pub fn children<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.is_element() && !matches!(c.tag_name().name(), "annotation" | "annotation-xml"))
}

/// How a `ci` becomes an expression: a variable of the model, or time, by the name the component uses.
pub trait Names {
    fn resolve(&self, name: &str) -> Option<Expr>;
}

/// An expression element: `apply`, `ci`, `cn`, `piecewise` or a constant.
pub fn expr<'a, 'i>(node: Node<'a, 'i>, names: &dyn Names) -> Res<'a, 'i, Expr> {
    match node.tag_name().name() {
        "ci" => {
            let name = node.text().unwrap_or("").trim();
            names.resolve(name).map_or_else(|| fail(node, format!("`{name}` is not a variable of this component"), "declare it with <variable name=…> in the component that uses it"), Ok)
        }
        "cn" => number(node).map(Expr::Num),
        "pi" => Ok(Expr::Num(std::f64::consts::PI)),
        "exponentiale" => Ok(Expr::Num(std::f64::consts::E)),
        "true" => Ok(Expr::Num(1.0)),
        "false" => Ok(Expr::Num(0.0)),
        "infinity" => Ok(Expr::Num(f64::INFINITY)),
        "notanumber" => Ok(Expr::Num(f64::NAN)),
        "piecewise" => {
            let mut pieces = Vec::new();
            let mut otherwise = None;
            for c in children(node) {
                match c.tag_name().name() {
                    "piece" => {
                        let parts: Vec<Node> = children(c).collect();
                        if parts.len() != 2 {
                            return fail(c, format!("a piece has {} parts, not a value and a condition", parts.len()), "write <piece> value condition </piece>");
                        }
                        pieces.push((expr(parts[0], names)?, expr(parts[1], names)?));
                    }
                    "otherwise" => {
                        let parts: Vec<Node> = children(c).collect();
                        if parts.len() != 1 {
                            return fail(c, "otherwise needs exactly one value", "write <otherwise> value </otherwise>");
                        }
                        otherwise = Some(expr(parts[0], names)?);
                    }
                    other => return fail(c, format!("<{other}> inside piecewise"), "piecewise holds <piece> and <otherwise> elements"),
                }
            }
            // no otherwise: undefined where no piece holds, which CellML tools read as NaN
            Ok(Expr::Piecewise(pieces, Box::new(otherwise.unwrap_or(Expr::Num(f64::NAN)))))
        }
        "apply" => apply(node, names),
        other => fail(node, format!("<{other}> is outside the MathML subset excite reads"), SUBSET),
    }
}

/// A `cn`'s value (`real`, `integer` or `e-notation` with `<sep/>`).
fn number<'a, 'i>(node: Node<'a, 'i>) -> Res<'a, 'i, f64> {
    let bad = |text: &str| MathError { node, problem: format!("`{}` is not a number", text.trim()), hint: "write a decimal number such as 0.5 or 1e-3" };
    let parse = |s: &str| s.trim().parse::<f64>().map_err(|_| bad(s));
    match node.attribute("type").unwrap_or("real") {
        "real" | "integer" | "double" => parse(node.text().unwrap_or("")),
        "e-notation" => {
            let texts: Vec<&str> = node.children().filter(|c| c.is_text()).filter_map(|c| c.text()).filter(|t| !t.trim().is_empty()).collect();
            if texts.len() != 2 || !node.children().any(|c| c.has_tag_name("sep")) {
                return fail(node, "an e-notation number needs a mantissa, <sep/> and an exponent", "write <cn type=\"e-notation\">1.5<sep/>-3</cn>");
            }
            Ok(parse(texts[0])? * 10f64.powf(parse(texts[1])?))
        }
        other => fail(node, format!("cn of type `{other}`"), "use a real, integer or e-notation number"),
    }
}

fn apply<'a, 'i>(node: Node<'a, 'i>, names: &dyn Names) -> Res<'a, 'i, Expr> {
    let mut parts = children(node);
    let Some(op) = parts.next() else {
        return fail(node, "an empty apply", "an apply starts with its operator, such as <plus/>");
    };
    let rest: Vec<Node> = parts.collect();
    // qualifiers (degree of a root, base of a log) are not arguments
    let qualifier = |name: &str| rest.iter().find(|c| c.has_tag_name(name)).copied();
    let args: Vec<Node> = rest.iter().copied().filter(|c| !matches!(c.tag_name().name(), "degree" | "logbase" | "bvar")).collect();
    let arity = |n: usize| -> Res<'a, 'i, ()> {
        if args.len() == n {
            Ok(())
        } else {
            fail(node, format!("<{}> takes {n} argument{}, this apply gives {}", op.tag_name().name(), if n == 1 { "" } else { "s" }, args.len()), "check the apply's arguments")
        }
    };
    let all = |args: &[Node<'a, 'i>]| args.iter().map(|a| expr(*a, names)).collect::<Res<'a, 'i, Vec<Expr>>>();
    let name = op.tag_name().name();
    let unary = |f: Func| -> Res<'a, 'i, Expr> {
        arity(1)?;
        Ok(Expr::Call(f, all(&args)?))
    };
    let binary = |f: Func| -> Res<'a, 'i, Expr> {
        arity(2)?;
        Ok(Expr::Call(f, all(&args)?))
    };
    match name {
        "plus" | "times" | "and" | "or" | "xor" => {
            if args.is_empty() {
                return fail(node, format!("<{name}> without arguments"), "give it at least one argument");
            }
            let f = match name {
                "plus" => Func::Add,
                "times" => Func::Mul,
                "and" => Func::And,
                "or" => Func::Or,
                _ => Func::Xor,
            };
            Ok(Expr::Call(f, all(&args)?))
        }
        "minus" => match args.len() {
            1 => Ok(Expr::Call(Func::Neg, all(&args)?)),
            2 => Ok(Expr::Call(Func::Sub, all(&args)?)),
            n => fail(node, format!("<minus> takes one or two arguments, this apply gives {n}"), "check the apply's arguments"),
        },
        "divide" => binary(Func::Div),
        "power" => binary(Func::Pow),
        // root and log: their argument and an optional qualifier (degree, base) holding one value
        "root" | "log" => {
            arity(1)?;
            let x = expr(args[0], names)?;
            let (tag, hint) = if name == "root" { ("degree", "write <degree><cn>3</cn></degree>") } else { ("logbase", "write <logbase><cn>2</cn></logbase>") };
            let q = match qualifier(tag) {
                None => None,
                Some(q) => {
                    let inner: Vec<Node> = children(q).collect();
                    if inner.len() != 1 {
                        return fail(q, format!("a {tag} holds one value"), hint);
                    }
                    Some(expr(inner[0], names)?)
                }
            };
            Ok(match (name, q) {
                ("root", None) => Expr::Call(Func::Sqrt, vec![x]),
                ("root", Some(degree)) => Expr::Call(Func::Pow, vec![x, Expr::Call(Func::Div, vec![Expr::Num(1.0), degree])]),
                (_, None) => Expr::Call(Func::Log10, vec![x]),
                (_, Some(base)) => Expr::Call(Func::Div, vec![Expr::Call(Func::Ln, vec![x]), Expr::Call(Func::Ln, vec![base])]),
            })
        }
        "exp" => unary(Func::Exp),
        "ln" => unary(Func::Ln),
        "floor" => unary(Func::Floor),
        "ceiling" => unary(Func::Ceil),
        "abs" => unary(Func::Abs),
        "sin" => unary(Func::Sin),
        "cos" => unary(Func::Cos),
        "tan" => unary(Func::Tan),
        "arcsin" => unary(Func::Asin),
        "arccos" => unary(Func::Acos),
        "arctan" => unary(Func::Atan),
        "sinh" => unary(Func::Sinh),
        "cosh" => unary(Func::Cosh),
        "tanh" => unary(Func::Tanh),
        "not" => unary(Func::Not),
        "lt" => binary(Func::Lt),
        "leq" => binary(Func::Le),
        "gt" => binary(Func::Gt),
        "geq" => binary(Func::Ge),
        "eq" => binary(Func::Eq),
        "neq" => binary(Func::Ne),
        "diff" => fail(op, "a derivative inside an expression", "derivatives may only stand on the left of an equation"),
        other => fail(op, format!("<{other}> is outside the MathML subset excite reads"), SUBSET),
    }
}
