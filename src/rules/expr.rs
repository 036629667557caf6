//! Expressions: computed values for `set` (`{expr: "price * quantity"}`) and `when`
//! conditions (`- expr: "abs(price - mark) / mark > 0.01"`), written in CEL (the Common
//! Expression Language) and run by the maintained `cel` crate.
//!
//! What this file adds to CEL is what market data needs, decided once at load:
//!
//! - **Names.** A bare name or a dotted chain is a payload field (`price`, `meta.venue`,
//!   `bids[0].price`, `payload["odd-name"]`); `capture.NAME` is a subject capture (checked
//!   against the route's `from`); `now_ms` the routing time. Every name becomes a slot the
//!   program reads from the message, so a payload is never converted whole.
//! - **Types by use**, checked at load. A name used in arithmetic or compared with a
//!   number is a number — numeric strings (`"67234.56"`) included, since exchanges send
//!   prices as text —; one joined to text with `+` or compared with text is text (numbers
//!   read as their text); one in `&&`, `||`, `!` a boolean. A name used as two types, an
//!   operator on the wrong types (`"a" * 2`), a `when` expression that is not a boolean,
//!   an unknown function, capture or variable are load errors.
//! - **One number type.** Every number is a double (integer literals included), so
//!   `(bid + ask) / 2` works; an integral result is written back as a JSON integer.
//! - **Functions**: `min(a, b, …)`, `max(a, b, …)`, `abs(x)`, `round(x)`, `round(x, n)`
//!   (n decimals), `floor(x)`, `ceil(x)`, `string(x)`, `double(x)`, `has(field)`, and the
//!   text methods `x.startsWith(y)`, `x.endsWith(y)`, `x.contains(y)`; `x in [a, b]`.
//!
//! At run time a missing field, or a value of the wrong type (a non-numeric string where
//! a number is needed), is an [`EvalError`]: a condition is then false, a step fails.
//!
//! Layer 1 (primitive) of [`crate::rules`]; imports `context` and `template`'s
//! [`CaptureScope`].

use std::fmt;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{CallExpr, Expr, IdedExpr, ListExpr, LiteralValue};
use cel::common::types::{CelBool, CelDouble, CelNull, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::{Context, VariableResolver};
use cel::{Env, Value as CelValue};
use serde_json::Value;

use super::context::MessageContext;
use super::lazy::JsonRoot;
use super::template::CaptureScope;

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("expression {text:?}: {message}")]
    Syntax { text: String, message: String },
    #[error("expression {text:?}: {message}")]
    Name { text: String, message: String },
    #[error("expression {text:?}: {message}")]
    Type { text: String, message: String },
}

/// Why an expression gave no value for one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("{name} is missing")]
    Missing { name: String },
    #[error("{name} is {found}, expected {expected}")]
    WrongType {
        name: String,
        expected: &'static str,
        found: String,
    },
    #[error("{0}")]
    Failed(String),
}

/// The type of an expression or of a name in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Number,
    Text,
    Bool,
    /// Not decided by its use (a name only compared with another name): its JSON type.
    Any,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Number => "a number",
            Type::Text => "text",
            Type::Bool => "a boolean",
            Type::Any => "any value",
        })
    }
}

/// A step of a field reference.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// What a slot reads from the message.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Field(Vec<Seg>),
    Capture(usize),
    NowMs,
}

#[derive(Debug, Clone)]
struct Slot {
    /// How the expression wrote it, for errors.
    name: String,
    source: Source,
    ty: Option<Type>,
    /// Only `has(...)` reads it: its presence, a boolean.
    presence: bool,
}

/// A compiled expression.
#[derive(Clone)]
pub struct Expression {
    text: String,
    program: IdedExpr,
    slots: Vec<Slot>,
    ty: Type,
    env: Arc<Env>,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expression({:?})", self.text)
    }
}

/// Slot `i` is the variable `_i` of the rewritten program.
fn slot_var(i: usize) -> String {
    format!("_{i}")
}

/// The shared environment: CEL's standard library and the functions above.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(build_env())).clone()
}

fn prism_abs(x: &CelDouble) -> CelDouble {
    x.inner().abs().into()
}
fn prism_floor(x: &CelDouble) -> CelDouble {
    x.inner().floor().into()
}
fn prism_ceil(x: &CelDouble) -> CelDouble {
    x.inner().ceil().into()
}
fn prism_round(x: &CelDouble) -> CelDouble {
    x.inner().round().into()
}
/// Rounds half away from zero to `n` decimals (a negative `n` rounds to tens, hundreds…).
fn prism_round_to(x: &CelDouble, n: &CelDouble) -> CelDouble {
    let n = n.inner().round().clamp(-15.0, 15.0) as i32;
    let scale = 10f64.powi(n);
    ((x.inner() * scale).round() / scale).into()
}
fn prism_min(a: &CelDouble, b: &CelDouble) -> CelDouble {
    a.inner().min(*b.inner()).into()
}
fn prism_max(a: &CelDouble, b: &CelDouble) -> CelDouble {
    a.inner().max(*b.inner()).into()
}
fn prism_mod(a: &CelDouble, b: &CelDouble) -> CelDouble {
    (a.inner() % b.inner()).into()
}

fn build_env() -> Env {
    let mut env = Env::stdlib();
    // Registration only fails for a duplicate name, which these are not; a failure would
    // show as an unknown function at load, never as a panic.
    let _ = cel::add_overload!(env, fn prism_abs: (CelDouble) -> CelDouble, name = "__abs");
    let _ = cel::add_overload!(env, fn prism_floor: (CelDouble) -> CelDouble, name = "__floor");
    let _ = cel::add_overload!(env, fn prism_ceil: (CelDouble) -> CelDouble, name = "__ceil");
    let _ = cel::add_overload!(env, fn prism_round: (CelDouble) -> CelDouble, name = "__round");
    let _ = cel::add_overload!(env, fn prism_round_to: (CelDouble, CelDouble) -> CelDouble, name = "__round");
    let _ =
        cel::add_overload!(env, fn prism_min: (CelDouble, CelDouble) -> CelDouble, name = "__min");
    let _ =
        cel::add_overload!(env, fn prism_max: (CelDouble, CelDouble) -> CelDouble, name = "__max");
    let _ =
        cel::add_overload!(env, fn prism_mod: (CelDouble, CelDouble) -> CelDouble, name = "__mod");
    env
}

/// The functions an expression may call, for errors.
const FUNCTIONS: &str = "min, max, abs, round, floor, ceil, string, double, has, \
                         startsWith, endsWith, contains";

impl Expression {
    /// Compiles `text` against the captures of `scope`; `want` is the type the place
    /// needs (`Bool` for a condition), `None` for any.
    pub fn compile(
        text: &str,
        scope: CaptureScope<'_>,
        want: Option<Type>,
    ) -> Result<Expression, ExprError> {
        let env = env();
        let program = env.compile(text).map_err(|e| ExprError::Syntax {
            text: text.into(),
            message: one_line(&e.to_string()),
        })?;
        let mut checker = Checker {
            text,
            scope,
            slots: Vec::new(),
        };
        let mut expr = program.expression().clone();
        checker.rewrite(&mut expr)?;
        let ty = match want {
            Some(t) => {
                checker.expect(&mut expr, t)?;
                t
            }
            None => checker.infer(&mut expr)?,
        };
        // A name whose type its use did not decide reads its JSON type.
        let slots = checker.slots;
        Ok(Expression {
            text: text.into(),
            program: expr,
            slots,
            ty,
            env,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The type of the expression's value (`Any` when it is a name alone).
    pub fn ty(&self) -> Type {
        self.ty
    }

    /// True when it reads the payload.
    pub fn uses_payload(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s.source, Source::Field(_)))
    }

    /// Evaluates for one message, as JSON.
    pub fn eval<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<Value, EvalError> {
        let result = self.run(ctx, payload)?;
        to_json(&result)
    }

    /// Evaluates a boolean expression (a condition).
    pub fn eval_bool<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<bool, EvalError> {
        match self.run(ctx, payload)? {
            CelValue::Bool(b) => Ok(b),
            other => Err(EvalError::Failed(format!(
                "expression gave {}, not a boolean",
                cel_kind(&other)
            ))),
        }
    }

    fn run<R: JsonRoot + ?Sized>(
        &self,
        ctx: &MessageContext<'_>,
        payload: &R,
    ) -> Result<CelValue, EvalError> {
        let mut values = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            values.push(prepare(slot, ctx, payload)?);
        }
        let resolver = Slots { values };
        let mut context = Context::with_env(self.env.clone());
        context.set_variable_resolver(&resolver);
        CelValue::resolve(&self.program, &context)
            .map_err(|e| EvalError::Failed(one_line(&e.to_string())))
    }
}

/// One slot's value for one message.
enum Prepared<'a> {
    Number(CelDouble),
    Text(CelString<'a>),
    Bool(CelBool),
    Null(CelNull),
}

struct Slots<'a> {
    values: Vec<Prepared<'a>>,
}

impl VariableResolver for Slots<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let i: usize = variable.strip_prefix('_')?.parse().ok()?;
        let v: &dyn Val = match self.values.get(i)? {
            Prepared::Number(n) => n,
            Prepared::Text(t) => t,
            Prepared::Bool(b) => b,
            Prepared::Null(n) => n,
        };
        Some(CowVal::Borrowed(v))
    }
}

/// A field chain: its first name is a top-level field (read without the whole payload).
fn lookup<'a, R: JsonRoot + ?Sized>(payload: &'a R, segs: &[Seg]) -> Option<&'a Value> {
    let (mut v, segs) = match segs.split_first() {
        Some((Seg::Key(k), rest)) => (payload.field(k)?, rest),
        _ => (payload.whole(), segs),
    };
    for s in segs {
        v = match s {
            Seg::Key(k) => v.get(k.as_str())?,
            Seg::Index(i) => v.get(*i)?,
        };
    }
    Some(v)
}

fn prepare<'a, R: JsonRoot + ?Sized>(
    slot: &Slot,
    ctx: &MessageContext<'a>,
    payload: &'a R,
) -> Result<Prepared<'a>, EvalError> {
    let ty = slot.ty.unwrap_or(Type::Any);
    let missing = || EvalError::Missing {
        name: slot.name.clone(),
    };
    // Ok: a payload value; Err: a capture's text
    let value: Result<&'a Value, &'a str> = match &slot.source {
        Source::NowMs => return Ok(Prepared::Number((ctx.now_ms as f64).into())),
        Source::Capture(i) => Err(ctx.captures.get(*i).copied().ok_or_else(missing)?),
        Source::Field(segs) => {
            let found = lookup(payload, segs);
            if slot.presence {
                return Ok(Prepared::Bool(found.is_some().into()));
            }
            Ok(found.ok_or_else(missing)?)
        }
    };
    let wrong = |expected: &'static str, found: String| EvalError::WrongType {
        name: slot.name.clone(),
        expected,
        found,
    };
    match value {
        // a capture is text
        Err(text) => match ty {
            Type::Number => super::value::parse_decimal(text)
                .map(|n| Prepared::Number(n.into()))
                .ok_or_else(|| wrong("a number", format!("{text:?}"))),
            Type::Bool => Err(wrong("a boolean", format!("{text:?}"))),
            Type::Text | Type::Any => Ok(Prepared::Text(CelString::from(text))),
        },
        Ok(json) => match (ty, json) {
            (Type::Number, v) => super::value::as_number(v)
                .map(|n| Prepared::Number(n.into()))
                .ok_or_else(|| wrong("a number", super::value::describe(v))),
            (Type::Text, Value::String(s)) => Ok(Prepared::Text(CelString::from(s.as_str()))),
            (Type::Text, Value::Number(n)) => Ok(Prepared::Text(CelString::from(n.to_string()))),
            (Type::Text, Value::Bool(b)) => Ok(Prepared::Text(CelString::from(b.to_string()))),
            (Type::Text, v) => Err(wrong("text", super::value::describe(v))),
            (Type::Bool, Value::Bool(b)) => Ok(Prepared::Bool((*b).into())),
            (Type::Bool, v) => Err(wrong("a boolean", super::value::describe(v))),
            (Type::Any, Value::String(s)) => Ok(Prepared::Text(CelString::from(s.as_str()))),
            (Type::Any, Value::Number(n)) => Ok(Prepared::Number(n.as_f64().unwrap_or(0.0).into())),
            (Type::Any, Value::Bool(b)) => Ok(Prepared::Bool((*b).into())),
            (Type::Any, Value::Null) => Ok(Prepared::Null(CelNull)),
            (Type::Any, v) => Err(wrong(
                "a number, text or a boolean",
                super::value::describe(v),
            )),
        },
    }
}

fn cel_kind(v: &CelValue) -> &'static str {
    match v {
        CelValue::Float(_) | CelValue::Int(_) | CelValue::UInt(_) => "a number",
        CelValue::String(_) => "text",
        CelValue::Bool(_) => "a boolean",
        CelValue::Null => "null",
        CelValue::List(_) => "a list",
        CelValue::Map(_) => "a map",
        _ => "a value of another kind",
    }
}

/// The largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// A number as JSON: integral values as integers, others as floats; not finite is an error.
pub fn number_to_json(n: f64) -> Result<Value, EvalError> {
    if !n.is_finite() {
        return Err(EvalError::Failed(format!(
            "the result is not a finite number ({n})"
        )));
    }
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT {
        return Ok(Value::from(n as i64));
    }
    Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
}

fn to_json(v: &CelValue) -> Result<Value, EvalError> {
    match v {
        CelValue::Float(f) => number_to_json(*f),
        CelValue::Int(i) => Ok(Value::from(*i)),
        CelValue::UInt(u) => Ok(Value::from(*u)),
        CelValue::String(s) => Ok(Value::String(s.as_str().to_string())),
        CelValue::Bool(b) => Ok(Value::Bool(*b)),
        CelValue::Null => Ok(Value::Null),
        other => Err(EvalError::Failed(format!(
            "expression gave {}, expected a number, text or a boolean",
            cel_kind(other)
        ))),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Resolves names to slots and checks types, rewriting the program as it goes: names become
/// slot variables, integer literals doubles, the functions their implementations.
struct Checker<'s> {
    text: &'s str,
    scope: CaptureScope<'s>,
    slots: Vec<Slot>,
}

const ARITH: &[&str] = &["_-_", "_*_", "_/_", "_%_"];
const ORDER: &[&str] = &["_<_", "_<=_", "_>_", "_>=_"];
const EQUALITY: &[&str] = &["_==_", "_!=_"];

impl Checker<'_> {
    fn name_err(&self, message: String) -> ExprError {
        ExprError::Name {
            text: self.text.into(),
            message,
        }
    }

    fn type_err(&self, message: String) -> ExprError {
        ExprError::Type {
            text: self.text.into(),
            message,
        }
    }

    /// The field or capture a node spells, if it is one: `a`, `a.b`, `a[0]`, `a["k"]`,
    /// `payload.x`, `capture.NAME`, `now_ms`.
    fn reference(&self, e: &IdedExpr) -> Result<Option<(String, Source)>, ExprError> {
        let mut segs = Vec::new();
        let mut cur = e;
        loop {
            match &cur.expr {
                Expr::Ident(name) => {
                    segs.push(Seg::Key(name.clone()));
                    break;
                }
                Expr::Select(s) if !s.test => {
                    segs.push(Seg::Key(s.field.clone()));
                    cur = &s.operand;
                }
                Expr::Call(c)
                    if c.func_name == "_[_]" && c.target.is_none() && c.args.len() == 2 =>
                {
                    match &c.args[1].expr {
                        Expr::Literal(LiteralValue::String(k)) => {
                            segs.push(Seg::Key(k.inner().to_string()))
                        }
                        Expr::Literal(LiteralValue::Int(i)) if *i.inner() >= 0 => {
                            segs.push(Seg::Index(*i.inner() as usize))
                        }
                        _ => {
                            return Err(self.type_err(
                                "an index is a literal text key or a non-negative integer".into(),
                            ))
                        }
                    }
                    cur = &c.args[0];
                }
                _ => return Ok(None),
            }
        }
        segs.reverse();
        let name = spell(&segs);
        let source = match segs.first() {
            Some(Seg::Key(root)) if root == "capture" => {
                let [_, Seg::Key(capture)] = segs.as_slice() else {
                    return Err(self.name_err("a capture is written capture.NAME".into()));
                };
                match self.scope {
                    CaptureScope::Names(names) => match names.iter().position(|n| n == capture) {
                        Some(i) => Source::Capture(i),
                        None => {
                            return Err(self.name_err(format!(
                                "capture.{capture}: the pattern has no capture {{{capture}}}"
                            )))
                        }
                    },
                    CaptureScope::Unchecked => Source::Capture(0),
                }
            }
            Some(Seg::Key(root)) if root == "now_ms" && segs.len() == 1 => Source::NowMs,
            Some(Seg::Key(root)) if root == "payload" => {
                if segs.len() == 1 {
                    return Err(self.name_err(
                        "`payload` alone is the whole message; name a field of it".into(),
                    ));
                }
                Source::Field(segs[1..].to_vec())
            }
            _ => Source::Field(segs),
        };
        Ok(Some((name, source)))
    }

    /// Replaces a reference by its slot variable; returns the slot index.
    fn slot(&mut self, e: &mut IdedExpr, name: String, source: Source, presence: bool) -> usize {
        let i = match self
            .slots
            .iter()
            .position(|s| s.source == source && s.presence == presence)
        {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    name,
                    ty: match (&source, presence) {
                        (_, true) | (Source::NowMs, _) => {
                            Some(if presence { Type::Bool } else { Type::Number })
                        }
                        _ => None,
                    },
                    source,
                    presence,
                });
                self.slots.len() - 1
            }
        };
        e.expr = Expr::Ident(slot_var(i));
        i
    }

    /// First pass: names to slots, `has()` to presence slots, integers to doubles,
    /// unsupported forms refused.
    fn rewrite(&mut self, e: &mut IdedExpr) -> Result<(), ExprError> {
        if let Some((name, source)) = self.reference(e)? {
            self.slot(e, name, source, false);
            return Ok(());
        }
        match &mut e.expr {
            Expr::Literal(LiteralValue::Int(i)) => {
                let v = *i.inner() as f64;
                e.expr = Expr::Literal(LiteralValue::Double(v.into()));
            }
            Expr::Literal(LiteralValue::UInt(u)) => {
                let v = *u.inner() as f64;
                e.expr = Expr::Literal(LiteralValue::Double(v.into()));
            }
            Expr::Literal(LiteralValue::Bytes(_)) => {
                return Err(self.type_err("byte literals are not supported".into()))
            }
            Expr::Literal(_) => {}
            Expr::Select(s) if s.test => {
                // has(a.b)
                let mut inner = (*s.operand).clone();
                inner = IdedExpr {
                    id: e.id,
                    expr: Expr::Select(cel::common::ast::SelectExpr {
                        operand: Box::new(inner),
                        field: s.field.clone(),
                        test: false,
                    }),
                };
                match self.reference(&inner)? {
                    Some((name, source @ Source::Field(_))) => {
                        self.slot(e, name, source, true);
                    }
                    _ => {
                        return Err(self.type_err("has() takes a payload field".into()));
                    }
                }
            }
            Expr::Call(c) if c.func_name == "has" && c.target.is_none() && c.args.len() == 1 => {
                // has(a): a single name is not a Select, CEL's macro leaves it a call
                match self.reference(&c.args[0])? {
                    Some((name, source @ Source::Field(_))) => {
                        self.slot(e, name, source, true);
                    }
                    _ => return Err(self.type_err("has() takes a payload field".into())),
                }
            }
            Expr::Call(c) => {
                if let Some(t) = &mut c.target {
                    self.rewrite(t)?;
                }
                for a in &mut c.args {
                    self.rewrite(a)?;
                }
            }
            Expr::List(ListExpr { elements, .. }) => {
                for el in elements {
                    self.rewrite(el)?;
                }
            }
            Expr::Ident(_) | Expr::Select(_) => {}
            Expr::Comprehension(_) => {
                return Err(self.type_err(
                    "macros over lists (all, exists, map, filter) are not supported".into(),
                ))
            }
            Expr::Map(_) | Expr::Struct(_) => {
                return Err(self.type_err("maps and messages are not supported".into()))
            }
            Expr::Unspecified => return Err(self.type_err("empty expression".into())),
        }
        Ok(())
    }

    fn slot_of(e: &IdedExpr) -> Option<usize> {
        match &e.expr {
            Expr::Ident(v) => v.strip_prefix('_')?.parse().ok(),
            _ => None,
        }
    }

    /// Makes `e` have type `want` (a slot takes it), or a type error.
    fn expect(&mut self, e: &mut IdedExpr, want: Type) -> Result<(), ExprError> {
        if let Some(i) = Self::slot_of(e) {
            let slot = &mut self.slots[i];
            return match slot.ty {
                None => {
                    slot.ty = Some(want);
                    Ok(())
                }
                Some(t) if t == want || want == Type::Any => Ok(()),
                Some(t) => {
                    let name = slot.name.clone();
                    Err(self.type_err(format!("{name} is used as {t} and as {want}")))
                }
            };
        }
        let got = self.infer(e)?;
        if got == want || got == Type::Any || want == Type::Any {
            if got == Type::Any {
                // an Any compound (a ternary of two undecided names) takes the wanted type
                self.force(e, want)?;
            }
            return Ok(());
        }
        Err(self.type_err(format!("{} is {got}, expected {want}", describe_node(e))))
    }

    /// Pushes a wanted type into the undecided names of `e`.
    fn force(&mut self, e: &mut IdedExpr, want: Type) -> Result<(), ExprError> {
        if Self::slot_of(e).is_some() {
            return self.expect(e, want);
        }
        if let Expr::Call(c) = &mut e.expr {
            if c.func_name == "_?_:_" && c.args.len() == 3 {
                let (_, rest) = c.args.split_at_mut(1);
                let (a, b) = rest.split_at_mut(1);
                self.expect(&mut a[0], want)?;
                self.expect(&mut b[0], want)?;
            }
        }
        Ok(())
    }

    /// The type of `e`, deciding the names it uses where the operators tell.
    fn infer(&mut self, e: &mut IdedExpr) -> Result<Type, ExprError> {
        if let Some(i) = Self::slot_of(e) {
            return Ok(self.slots[i].ty.unwrap_or(Type::Any));
        }
        let id = e.id;
        let Expr::Call(c) = &mut e.expr else {
            return Ok(match &e.expr {
                Expr::Literal(LiteralValue::Double(_)) => Type::Number,
                Expr::Literal(LiteralValue::String(_)) => Type::Text,
                Expr::Literal(LiteralValue::Boolean(_)) => Type::Bool,
                Expr::Literal(_) => Type::Any,
                Expr::List(_) => {
                    return Err(self.type_err("a list is allowed only after `in`".into()))
                }
                Expr::Ident(name) => {
                    return Err(self.name_err(format!("unknown name `{name}`")));
                }
                _ => return Err(self.type_err("unsupported expression".into())),
            });
        };
        let f = c.func_name.clone();
        let argc = c.args.len();
        if let Some(target) = &mut c.target {
            // member functions on text
            return match f.as_str() {
                "startsWith" | "endsWith" | "contains" if argc == 1 => {
                    self.expect(target, Type::Text)?;
                    self.expect(&mut c.args[0], Type::Text)?;
                    Ok(Type::Bool)
                }
                _ => Err(self.name_err(format!(
                    "unknown method `{f}` (known: startsWith, endsWith, contains)"
                ))),
            };
        }
        let args = &mut c.args;
        match f.as_str() {
            op if ARITH.contains(&op) => {
                self.expect(&mut args[0], Type::Number)?;
                self.expect(&mut args[1], Type::Number)?;
                if op == "_%_" {
                    c.func_name = "__mod".into();
                }
                Ok(Type::Number)
            }
            "-_" => {
                self.expect(&mut args[0], Type::Number)?;
                Ok(Type::Number)
            }
            "_+_" => {
                let (l, r) = (self.infer(&mut args[0])?, self.infer(&mut args[1])?);
                let t = if l == Type::Text || r == Type::Text {
                    Type::Text
                } else {
                    Type::Number
                };
                self.expect(&mut args[0], t)?;
                self.expect(&mut args[1], t)?;
                Ok(t)
            }
            op if ORDER.contains(&op) => {
                let (l, r) = (self.infer(&mut args[0])?, self.infer(&mut args[1])?);
                let t = if l == Type::Text || r == Type::Text {
                    Type::Text
                } else {
                    Type::Number
                };
                self.expect(&mut args[0], t)?;
                self.expect(&mut args[1], t)?;
                Ok(Type::Bool)
            }
            op if EQUALITY.contains(&op) => {
                let (l, r) = (self.infer(&mut args[0])?, self.infer(&mut args[1])?);
                match (l, r) {
                    (Type::Any, Type::Any) => {}
                    (Type::Any, t) => self.expect(&mut args[0], t)?,
                    (t, Type::Any) => self.expect(&mut args[1], t)?,
                    (a, b) if a != b => {
                        return Err(self.type_err(format!(
                            "{} ({a}) is compared with {} ({b})",
                            describe_node(&args[0]),
                            describe_node(&args[1])
                        )))
                    }
                    _ => {}
                }
                Ok(Type::Bool)
            }
            "_&&_" | "_||_" => {
                self.expect(&mut args[0], Type::Bool)?;
                self.expect(&mut args[1], Type::Bool)?;
                Ok(Type::Bool)
            }
            "!_" => {
                self.expect(&mut args[0], Type::Bool)?;
                Ok(Type::Bool)
            }
            "_?_:_" => {
                self.expect(&mut args[0], Type::Bool)?;
                let (a, b) = (self.infer(&mut args[1])?, self.infer(&mut args[2])?);
                match (a, b) {
                    (Type::Any, Type::Any) => Ok(Type::Any),
                    (Type::Any, t) | (t, Type::Any) => {
                        self.expect(&mut args[1], t)?;
                        self.expect(&mut args[2], t)?;
                        Ok(t)
                    }
                    (a, b) if a == b => Ok(a),
                    (a, b) => {
                        Err(self.type_err(format!("the two branches of `? :` are {a} and {b}")))
                    }
                }
            }
            "@in" => {
                let Expr::List(list) = &mut args[1].expr else {
                    return Err(self.type_err("`in` takes a list literal: x in [a, b]".into()));
                };
                let mut t = Type::Any;
                for el in &mut list.elements {
                    if !matches!(el.expr, Expr::Literal(_)) {
                        return Err(self.type_err("the list after `in` holds literals only".into()));
                    }
                    let et = self.infer(el)?;
                    if t == Type::Any {
                        t = et;
                    } else if et != t {
                        return Err(self.type_err("the list after `in` mixes types".into()));
                    }
                }
                self.expect(&mut args[0], t)?;
                Ok(Type::Bool)
            }
            "min" | "max" if argc >= 1 => {
                for a in args.iter_mut() {
                    self.expect(a, Type::Number)?;
                }
                let name = if f == "min" { "__min" } else { "__max" };
                // min(a, b, c) = __min(__min(a, b), c)
                let mut items = std::mem::take(args).into_iter();
                let mut acc = items.next().unwrap_or_default();
                for next in items {
                    acc = IdedExpr {
                        id,
                        expr: Expr::Call(CallExpr {
                            func_name: name.into(),
                            target: None,
                            args: vec![acc, next],
                        }),
                    };
                }
                *e = acc;
                Ok(Type::Number)
            }
            "abs" | "floor" | "ceil" if argc == 1 => {
                self.expect(&mut args[0], Type::Number)?;
                c.func_name = format!("__{f}");
                Ok(Type::Number)
            }
            "round" if argc == 1 || argc == 2 => {
                for a in args.iter_mut() {
                    self.expect(a, Type::Number)?;
                }
                c.func_name = "__round".into();
                Ok(Type::Number)
            }
            "string" if argc == 1 => {
                if Self::slot_of(&args[0]).is_some() {
                    // a name read as text: no conversion left to do
                    self.expect(&mut args[0], Type::Text)?;
                    let inner = args.remove(0);
                    *e = inner;
                    return Ok(Type::Text);
                }
                match self.infer(&mut args[0])? {
                    Type::Text => {
                        let inner = args.remove(0);
                        *e = inner;
                    }
                    Type::Any => self.force(&mut args[0], Type::Text)?,
                    Type::Number | Type::Bool => {}
                }
                Ok(Type::Text)
            }
            "double" if argc == 1 => {
                let is_slot = Self::slot_of(&args[0]).is_some();
                match self.infer(&mut args[0])? {
                    // CEL's own double() parses text
                    Type::Text if !is_slot => {}
                    Type::Bool => {
                        return Err(self.type_err("double() of a boolean".into()));
                    }
                    _ => {
                        self.expect(&mut args[0], Type::Number)?;
                        let inner = args.remove(0);
                        *e = inner;
                    }
                }
                Ok(Type::Number)
            }
            "min" | "max" | "abs" | "floor" | "ceil" | "round" | "string" | "double" => {
                Err(self.type_err(format!("`{f}` called with {argc} argument(s)")))
            }
            other if other.starts_with('_') || other.starts_with('@') || other.starts_with('!') => {
                Err(self.type_err(format!("operator {other} is not supported")))
            }
            other => Err(self.name_err(format!("unknown function `{other}` (known: {FUNCTIONS})"))),
        }
    }
}

fn spell(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

fn describe_node(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => format!("{:?}", s.inner()),
        Expr::Literal(LiteralValue::Double(d)) => format!("{}", d.inner()),
        Expr::Literal(LiteralValue::Boolean(b)) => format!("{}", b.inner()),
        Expr::Call(c) => match c.func_name.as_str() {
            "_+_" | "_-_" | "_*_" | "_/_" | "__mod" | "-_" => "an arithmetic result".into(),
            "_&&_" | "_||_" | "!_" => "a logical result".into(),
            "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "@in" => "a comparison".into(),
            f => format!("{}()", f.trim_start_matches('_')),
        },
        _ => "a value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::headers::Headers;
    use serde_json::json;

    fn names() -> Vec<String> {
        vec!["exchange".into(), "symbol".into()]
    }

    fn compile(text: &str, want: Option<Type>) -> Result<Expression, ExprError> {
        let n = names();
        Expression::compile(text, CaptureScope::Names(&n), want)
    }

    fn eval(text: &str, payload: Value) -> Result<Value, EvalError> {
        let e = compile(text, None).unwrap_or_else(|err| panic!("{text}: {err}"));
        let headers = Headers::new();
        let ctx = MessageContext {
            subject: "trade.binance.BTC-USDT",
            captures: &["binance", "BTC-USDT"],
            headers: &headers,
            now_ms: 1_000,
        };
        e.eval(&ctx, &payload)
    }

    fn trade() -> Value {
        json!({"price": "67234.5", "quantity": 0.5, "side": "buy", "bid": "10", "ask": 12,
               "meta": {"venue": "x", "levels": [{"p": "3"}]}, "flag": true, "trade_id": 77,
               "odd-name": 4})
    }

    #[test]
    fn arithmetic_on_numeric_strings_and_numbers() {
        assert_eq!(eval("price * quantity", trade()).unwrap(), json!(33617.25));
        assert_eq!(eval("(bid + ask) / 2", trade()).unwrap(), json!(11));
        assert_eq!(
            eval("(ask - bid) / ((ask + bid) / 2) * 10000", trade()).unwrap(),
            json!(1818.1818181818182)
        );
        assert_eq!(eval("-bid + 1", trade()).unwrap(), json!(-9));
        assert_eq!(eval("now_ms % 300", trade()).unwrap(), json!(100));
        assert_eq!(eval("meta.levels[0].p * 2", trade()).unwrap(), json!(6));
        assert_eq!(
            eval("payload[\"odd-name\"] + 1", trade()).unwrap(),
            json!(5)
        );
    }

    #[test]
    fn functions() {
        assert_eq!(eval("min(bid, ask, 11)", trade()).unwrap(), json!(10));
        assert_eq!(eval("max(bid, ask)", trade()).unwrap(), json!(12));
        assert_eq!(eval("abs(bid - ask)", trade()).unwrap(), json!(2));
        assert_eq!(
            eval("round(price * 1.001, 2)", trade()).unwrap(),
            json!(67301.73)
        );
        assert_eq!(eval("round(2.5)", trade()).unwrap(), json!(3));
        assert_eq!(eval("floor(price)", trade()).unwrap(), json!(67234));
        assert_eq!(eval("ceil(quantity)", trade()).unwrap(), json!(1));
        assert_eq!(eval("string(price * 2)", trade()).unwrap(), json!("134469"));
        assert_eq!(eval("double(\"1.5\") + 1", trade()).unwrap(), json!(2.5));
        assert_eq!(
            eval("has(meta.venue) && !has(payload.nope)", trade()).unwrap(),
            json!(true)
        );
        assert_eq!(
            eval("side.startsWith(\"b\")", trade()).unwrap(),
            json!(true)
        );
    }

    #[test]
    fn text_and_captures() {
        assert_eq!(
            eval(
                "capture.exchange + \":\" + capture.symbol + \":\" + trade_id",
                trade()
            )
            .unwrap(),
            json!("binance:BTC-USDT:77")
        );
        assert_eq!(eval("side == \"buy\"", trade()).unwrap(), json!(true));
        assert_eq!(
            eval("side in [\"buy\", \"sell\"]", trade()).unwrap(),
            json!(true)
        );
        assert_eq!(eval("quantity in [0.5, 1]", trade()).unwrap(), json!(true));
        assert_eq!(
            eval("flag ? side : \"none\"", trade()).unwrap(),
            json!("buy")
        );
        assert_eq!(
            eval("price > 60000 && side != \"sell\"", trade()).unwrap(),
            json!(true)
        );
        assert_eq!(eval("bid == ask", trade()).unwrap(), json!(false));
    }

    #[test]
    fn missing_and_wrong_values_are_errors() {
        let e = eval("nope * 2", trade()).unwrap_err();
        assert_eq!(
            e,
            EvalError::Missing {
                name: "nope".into()
            }
        );
        let e = eval("side * 2", trade()).unwrap_err();
        assert!(matches!(e, EvalError::WrongType { .. }), "{e}");
        let e = eval("bid / 0", trade()).unwrap_err();
        assert!(e.to_string().contains("not a finite number"), "{e}");
        assert!(eval("meta * 1", trade()).is_err());
    }

    #[test]
    fn load_errors() {
        let cases = [
            ("price *", "expression"),
            ("\"a\" * 2", "expected a number"),
            (
                "price * 2 + side + \"x\" == 1",
                "is a number, expected text",
            ),
            ("side + \"x\" == 1", "is compared with"),
            (
                "price * 2 > 1 && price.startsWith(\"1\")",
                "used as a number and as text",
            ),
            ("frobnicate(price)", "unknown function `frobnicate`"),
            ("capture.market", "no capture {market}"),
            ("round(price, 1, 2)", "3 argument(s)"),
            ("[1, 2]", "list"),
            ("{\"a\": 1}", "maps"),
            ("[1].all(x, x > 0)", "not supported"),
            ("price.frob()", "unknown method"),
            ("flag ? 1 : \"a\"", "branches"),
        ];
        for (text, needle) in cases {
            let err = compile(text, None)
                .err()
                .unwrap_or_else(|| panic!("{text} compiled"));
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        let err = compile("price * 2", Some(Type::Bool)).unwrap_err();
        assert!(err.to_string().contains("expected a boolean"), "{err}");
        assert!(compile("price > 2", Some(Type::Bool)).is_ok());
        assert!(compile("flag", Some(Type::Bool)).is_ok());
    }

    #[test]
    fn integral_results_are_integers() {
        assert_eq!(number_to_json(3.0).unwrap(), json!(3));
        assert_eq!(
            number_to_json(1795290180000.0).unwrap(),
            json!(1795290180000_i64)
        );
        assert_eq!(number_to_json(0.25).unwrap(), json!(0.25));
        assert!(number_to_json(f64::NAN).is_err());
    }
}
