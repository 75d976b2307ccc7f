//! Which `event.data` fields a compiled rule reads, and with what literal it compares them,
//! found in its AST (Rhai's `internals`): `event.data.total`, `event.data["total"]`,
//! `event.data.items[0].sku`, and `event.data.total > 100`. A field reached some other way
//! (`let d = event.data; d.total`, a computed key) is not seen.

use rhai::{AST, ASTNode, Expr, Position, Stmt};

/// One step of a path into the data: a field name, or an element of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Field {
        name: String,
        line: usize,
        column: usize,
    },
    Element,
}

/// One place a rule reads the event's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRead {
    /// The steps after `event.data`.
    pub steps: Vec<Step>,
    /// The JSON type of a literal the field is compared with (`==`, `!=`, `<`, `<=`, `>`,
    /// `>=`), and where that literal is.
    pub compared_with: Option<(&'static str, usize, usize)>,
}

impl FieldRead {
    /// A path a plugin's manifest says it reads: `data.total`, `data.items[].sku`.
    pub fn parse(path: &str) -> Result<FieldRead, String> {
        let Some(rest) = path.strip_prefix("data.") else {
            return Err(format!("`{path}` does not start with `data.`"));
        };
        let mut steps = Vec::new();
        for part in rest.split('.') {
            let (name, elements) = match part.split_once("[]") {
                Some((name, tail)) if tail.chars().all(|c| c == '[' || c == ']') => {
                    (name, 1 + tail.len() / 2)
                }
                Some(_) => return Err(format!("`{path}`: `[]` ends a step")),
                None => (part, 0),
            };
            if name.is_empty() {
                return Err(format!("`{path}` has an empty step"));
            }
            steps.push(Step::Field {
                name: name.to_owned(),
                line: 0,
                column: 0,
            });
            steps.extend(std::iter::repeat_n(Step::Element, elements));
        }
        Ok(FieldRead {
            steps,
            compared_with: None,
        })
    }

    /// `event.data.items[].sku`.
    pub fn dotted(&self) -> String {
        let mut text = String::from("event.data");
        for step in &self.steps {
            match step {
                Step::Field { name, .. } => {
                    text.push('.');
                    text.push_str(name);
                }
                Step::Element => text.push_str("[]"),
            }
        }
        text
    }
}

const COMPARISONS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];

/// Every `event.data` read of `ast`, in source order.
pub fn data_reads(ast: &AST) -> Vec<FieldRead> {
    // With whether the chain was read to its end: only then is a comparison about the field.
    let mut reads: Vec<(Position, FieldRead, bool)> = Vec::new();
    let mut compared: Vec<(Position, (&'static str, usize, usize))> = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(expr @ Expr::Dot(..))) => {
                if let Some((steps, whole)) = data_steps(expr) {
                    let read = FieldRead {
                        steps,
                        compared_with: None,
                    };
                    reads.push((expr.position(), read, whole));
                }
            }
            // A call standing alone as a statement is a `Stmt::FnCall`.
            Some(ASTNode::Expr(Expr::FnCall(call, _)) | ASTNode::Stmt(Stmt::FnCall(call, _)))
                if call.op_token.is_some()
                    && call.args.len() == 2
                    && COMPARISONS.contains(&call.name.as_str()) =>
            {
                for (field, other) in [
                    (&call.args[0], &call.args[1]),
                    (&call.args[1], &call.args[0]),
                ] {
                    if let (Expr::Dot(..), Some(literal)) = (field, literal_type(other)) {
                        let (line, column) = line_column(other.start_position());
                        compared.push((field.position(), (literal, line, column)));
                    }
                }
            }
            _ => {}
        }
        true
    });
    for (position, literal) in compared {
        if let Some((_, read, _)) = reads
            .iter_mut()
            .find(|(at, _, whole)| *at == position && *whole)
        {
            read.compared_with = Some(literal);
        }
    }
    reads.sort_by_key(|(position, _, _)| line_column(*position));
    reads.into_iter().map(|(_, read, _)| read).collect()
}

/// The steps after `event.data` when `expr` is a chain starting there, and whether they go to
/// the chain's end (not cut short by a method call or a computed key).
fn data_steps(expr: &Expr) -> Option<(Vec<Step>, bool)> {
    let Expr::Dot(chain, ..) = expr else {
        return None;
    };
    let Expr::Variable(variable, ..) = &chain.lhs else {
        return None;
    };
    if variable.1.as_str() != "event" {
        return None;
    }
    let mut steps = Vec::new();
    let whole = walk_chain(&chain.rhs, &mut steps);
    match steps.first() {
        Some(Step::Field { name, .. }) if name == "data" => Some((steps.split_off(1), whole)),
        _ => None,
    }
}

/// Appends the steps of a chain's right-hand side; stops at the first step that is not a
/// property, a string key or an integer index (a method call, a computed key). Returns whether
/// it went through to the end.
fn walk_chain(expr: &Expr, steps: &mut Vec<Step>) -> bool {
    match expr {
        Expr::Property(property, position) => {
            let (line, column) = line_column(*position);
            steps.push(Step::Field {
                name: property.2.to_string(),
                line,
                column,
            });
            true
        }
        Expr::StringConstant(name, position) => {
            let (line, column) = line_column(*position);
            steps.push(Step::Field {
                name: name.to_string(),
                line,
                column,
            });
            true
        }
        Expr::IntegerConstant(..) => {
            steps.push(Step::Element);
            true
        }
        Expr::Dot(chain, ..) | Expr::Index(chain, ..) => {
            walk_chain(&chain.lhs, steps) && walk_chain(&chain.rhs, steps)
        }
        _ => false,
    }
}

/// The JSON type of a literal.
fn literal_type(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::BoolConstant(..) => Some("boolean"),
        Expr::IntegerConstant(..) => Some("integer"),
        Expr::FloatConstant(..) => Some("number"),
        Expr::StringConstant(..) | Expr::InterpolatedString(..) | Expr::CharConstant(..) => {
            Some("string")
        }
        Expr::Unit(..) => Some("null"),
        Expr::Array(..) => Some("array"),
        Expr::Map(..) => Some("object"),
        _ => None,
    }
}

fn line_column(position: Position) -> (usize, usize) {
    (
        position.line().unwrap_or(0),
        position.position().unwrap_or(0),
    )
}
