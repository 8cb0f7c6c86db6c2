//! The operators: exactly what `xlpatch export` writes, in both spellings (`basic`, opset 21
//! primitives; `fused`, opset 23 `RMSNormalization`, `RotaryEmbedding`, `Attention`), per the
//! ONNX operator specification. An operator outside [`SUPPORTED`] is refused when a graph is
//! loaded, naming operator and graph; adding one is an entry here and a match arm in [`eval`].

use candle_core::{D, DType, Tensor};

use crate::graph::{Ctx, EvalError, Host, Result, Value, err};
use crate::onnx::{NodeProto, data_type};

/// Every operator [`eval`] implements.
pub(crate) const SUPPORTED: &[&str] = &[
    "Add",
    "And",
    "Attention",
    "Cast",
    "Concat",
    "Cos",
    "Div",
    "Erf",
    "Exp",
    "Gather",
    "Gelu",
    "Identity",
    "Less",
    "LessOrEqual",
    "MatMul",
    "Mul",
    "Neg",
    "RMSNormalization",
    "Range",
    "Reciprocal",
    "ReduceMean",
    "Reshape",
    "RotaryEmbedding",
    "Shape",
    "Sigmoid",
    "Sin",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a crate::onnx::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).map_or(default, |a| a.f)
}

fn arg<'a>(args: &[Option<&'a Value>], i: usize) -> Result<&'a Value> {
    args.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| EvalError(format!("input {i} is missing")))
}

fn opt<'a>(args: &[Option<&'a Value>], i: usize) -> Option<&'a Value> {
    args.get(i).copied().flatten()
}

fn float(v: &Value) -> Result<&Tensor> {
    match v {
        Value::F(t) => Ok(t),
        other => err(format!("expected a float tensor, got {}", other.kind())),
    }
}

fn ints(v: &Value) -> Result<&Host<i64>> {
    match v {
        Value::I(h) => Ok(h),
        other => err(format!("expected an int64 tensor, got {}", other.kind())),
    }
}

fn bools(v: &Value) -> Result<&Host<bool>> {
    match v {
        Value::B(h) => Ok(h),
        other => err(format!("expected a bool tensor, got {}", other.kind())),
    }
}

fn scalar_i(v: &Value) -> Result<i64> {
    let h = ints(v)?;
    match h.data.as_slice() {
        [x] => Ok(*x),
        _ => err(format!("expected an int64 scalar, got shape {:?}", h.shape)),
    }
}

/// `axis` (possibly negative) of a rank-`rank` tensor.
fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let x = if a < 0 { a + r } else { a };
    if (0..r).contains(&x) {
        Ok(x as usize)
    } else {
        err(format!("axis {a} is outside a rank-{rank} tensor"))
    }
}

/// The numpy broadcast of two shapes.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() < r {
            1
        } else {
            s[i + s.len() - r]
        }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// Strides of `shape` as seen from a broadcast `out` shape (0 along broadcast dims).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let o = i + out.len() - shape.len();
        strides[o] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    strides
}

/// Element-wise `f` over two broadcast host tensors.
fn host_binary<A: Copy, B: Copy, C>(
    a: &Host<A>,
    b: &Host<B>,
    f: impl Fn(A, B) -> C,
) -> Result<Host<C>> {
    let out = broadcast_shape(&a.shape, &b.shape)?;
    let (sa, sb) = (
        broadcast_strides(&a.shape, &out),
        broadcast_strides(&b.shape, &out),
    );
    let n: usize = out.iter().product();
    let mut data = Vec::with_capacity(n);
    let mut idx = vec![0usize; out.len()];
    for _ in 0..n {
        let (mut oa, mut ob) = (0, 0);
        for (k, &i) in idx.iter().enumerate() {
            oa += i * sa[k];
            ob += i * sb[k];
        }
        data.push(f(a.data[oa], b.data[ob]));
        for k in (0..out.len()).rev() {
            idx[k] += 1;
            if idx[k] < out[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(Host::new(out, data))
}

fn upload_u8(h: &Host<bool>, ctx: &Ctx) -> Result<Tensor> {
    let v: Vec<u8> = h.data.iter().map(|&b| u8::from(b)).collect();
    Ok(Tensor::from_vec(v, h.shape.clone(), &ctx.device)?)
}

fn upload_f(h: &Host<i64>, ctx: &Ctx) -> Result<Tensor> {
    let v: Vec<f32> = h.data.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, h.shape.clone(), &ctx.device)?.to_dtype(ctx.dtype)?)
}

fn unsqueeze_shape(shape: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let r = shape.len() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_>>()?;
    axes.sort_unstable();
    let mut out = shape.to_vec();
    for a in axes {
        out.insert(a, 1);
    }
    Ok(out)
}

fn squeeze_shape(shape: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    match axes {
        None => Ok(shape.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let axes: Vec<usize> = axes
                .iter()
                .map(|&a| axis(a, shape.len()))
                .collect::<Result<_>>()?;
            if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
                return err(format!("cannot squeeze axis {a} of shape {shape:?}"));
            }
            Ok(shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

fn reshape_value(v: &Value, shape: Vec<usize>) -> Result<Value> {
    Ok(match v {
        Value::F(t) => Value::F(t.reshape(shape)?),
        Value::I(h) => Value::I(Host::new(shape, h.data.clone())),
        Value::B(h) => Value::B(Host::new(shape, h.data.clone())),
    })
}

/// Evaluates node `n` on its inputs (`None` for an omitted optional input).
pub(crate) fn eval(n: &NodeProto, args: &[Option<&Value>], ctx: &Ctx) -> Result<Vec<Value>> {
    let one = |v: Value| Ok(vec![v]);
    let unary = |f: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>| -> Result<Vec<Value>> {
        Ok(vec![Value::F(f(float(arg(args, 0)?)?)?)])
    };
    match n.op_type.as_str() {
        "Identity" => one(arg(args, 0)?.clone()),
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (arg(args, 0)?, arg(args, 1)?);
            match (a, b) {
                (Value::F(a), Value::F(b)) => one(Value::F(match n.op_type.as_str() {
                    "Add" => a.broadcast_add(b)?,
                    "Sub" => a.broadcast_sub(b)?,
                    "Mul" => a.broadcast_mul(b)?,
                    _ => a.broadcast_div(b)?,
                })),
                (Value::I(a), Value::I(b)) => {
                    let op = n.op_type.as_str();
                    if op == "Div" && b.data.contains(&0) {
                        return err("integer division by zero");
                    }
                    one(Value::I(host_binary(a, b, |x, y| match op {
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Mul" => x * y,
                        _ => x.div_euclid(y),
                    })?))
                }
                _ => err(format!("operands of types {} and {}", a.kind(), b.kind())),
            }
        }
        "Less" | "LessOrEqual" => {
            let (a, b) = (ints(arg(args, 0)?)?, ints(arg(args, 1)?)?);
            let le = n.op_type == "LessOrEqual";
            one(Value::B(host_binary(a, b, |x, y| {
                if le { x <= y } else { x < y }
            })?))
        }
        "And" => {
            let (a, b) = (bools(arg(args, 0)?)?, bools(arg(args, 1)?)?);
            one(Value::B(host_binary(a, b, |x, y| x && y)?))
        }
        "Where" => {
            let c = bools(arg(args, 0)?)?;
            let (x, y) = (float(arg(args, 1)?)?, float(arg(args, 2)?)?);
            let shape = broadcast_shape(&broadcast_shape(&c.shape, x.dims())?, y.dims())?;
            let c = upload_u8(c, ctx)?.broadcast_as(shape.clone())?;
            one(Value::F(c.where_cond(
                &x.broadcast_as(shape.clone())?,
                &y.broadcast_as(shape)?,
            )?))
        }
        "Cast" => {
            let to = attr_i(n, "to", 0) as i32;
            let v = arg(args, 0)?;
            one(match (to, v) {
                (data_type::FLOAT, Value::F(t)) => Value::F(t.to_dtype(ctx.dtype)?),
                (data_type::FLOAT, Value::I(h)) => Value::F(upload_f(h, ctx)?),
                (data_type::FLOAT, Value::B(h)) => Value::F(
                    upload_u8(h, ctx)?
                        .to_dtype(DType::F32)?
                        .to_dtype(ctx.dtype)?,
                ),
                (data_type::BOOL, Value::I(h)) => Value::B(Host::new(
                    h.shape.clone(),
                    h.data.iter().map(|&x| x != 0).collect(),
                )),
                (data_type::BOOL, Value::B(h)) => Value::B(h.clone()),
                (data_type::INT64, Value::I(h)) => Value::I(h.clone()),
                (data_type::INT64, Value::B(h)) => Value::I(Host::new(
                    h.shape.clone(),
                    h.data.iter().map(|&x| i64::from(x)).collect(),
                )),
                (to, v) => return err(format!("cast of {} to type {to}", v.kind())),
            })
        }
        "Shape" => {
            let shape = arg(args, 0)?.shape();
            let r = shape.len() as i64;
            let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
            let start = clamp(attr_i(n, "start", 0));
            let end = clamp(attr(n, "end").map_or(r, |a| a.i)).max(start);
            let dims: Vec<i64> = shape[start..end].iter().map(|&d| d as i64).collect();
            one(Value::I(Host::new(vec![dims.len()], dims)))
        }
        "Range" => {
            let (s, l, d) = (
                scalar_i(arg(args, 0)?)?,
                scalar_i(arg(args, 1)?)?,
                scalar_i(arg(args, 2)?)?,
            );
            if d == 0 {
                return err("Range with delta 0");
            }
            let len = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
            let data: Vec<i64> = (0..len as i64).map(|i| s + i * d).collect();
            one(Value::I(Host::new(vec![len], data)))
        }
        "Reshape" => {
            let v = arg(args, 0)?;
            let target = ints(arg(args, 1)?)?;
            let shape = v.shape();
            let allowzero = attr_i(n, "allowzero", 0) != 0;
            let total: usize = shape.iter().product();
            let mut dims: Vec<usize> = Vec::with_capacity(target.data.len());
            let mut infer = None;
            for (i, &t) in target.data.iter().enumerate() {
                dims.push(match t {
                    0 if !allowzero => *shape
                        .get(i)
                        .ok_or_else(|| EvalError(format!("reshape 0 at {i} of {shape:?}")))?,
                    -1 => {
                        infer = Some(i);
                        1
                    }
                    t if t >= 0 => t as usize,
                    t => return err(format!("reshape dimension {t}")),
                });
            }
            if let Some(i) = infer {
                let known: usize = dims.iter().product();
                if known == 0 || !total.is_multiple_of(known) {
                    return err(format!("cannot reshape {shape:?} to {:?}", target.data));
                }
                dims[i] = total / known;
            }
            if dims.iter().product::<usize>() != total {
                return err(format!("cannot reshape {shape:?} to {:?}", target.data));
            }
            one(reshape_value(v, dims)?)
        }
        "Unsqueeze" => {
            let v = arg(args, 0)?;
            let axes = ints(arg(args, 1)?)?;
            let shape = unsqueeze_shape(&v.shape(), &axes.data)?;
            one(reshape_value(v, shape)?)
        }
        "Squeeze" => {
            let v = arg(args, 0)?;
            let axes = opt(args, 1).map(ints).transpose()?;
            let shape = squeeze_shape(&v.shape(), axes.map(|a| a.data.as_slice()))?;
            one(reshape_value(v, shape)?)
        }
        "Transpose" => {
            let t = float(arg(args, 0)?)?;
            let r = t.rank();
            let perm: Vec<usize> = match attr(n, "perm") {
                Some(a) => a.ints.iter().map(|&p| axis(p, r)).collect::<Result<_>>()?,
                None => (0..r).rev().collect(),
            };
            one(Value::F(t.permute(perm)?))
        }
        "Concat" => {
            let ts: Vec<&Tensor> = args
                .iter()
                .flatten()
                .map(|v| float(v))
                .collect::<Result<_>>()?;
            let Some(first) = ts.first() else {
                return err("Concat of nothing");
            };
            let ax = axis(attr_i(n, "axis", 0), first.rank())?;
            // A zero-length past cache adds nothing.
            let parts: Vec<&Tensor> = ts.iter().copied().filter(|t| t.elem_count() > 0).collect();
            one(Value::F(match parts.as_slice() {
                [] => (*first).clone(),
                [only] => (*only).clone(),
                _ => Tensor::cat(&parts, ax)?,
            }))
        }
        "Split" => {
            let t = float(arg(args, 0)?)?;
            let ax = axis(attr_i(n, "axis", 0), t.rank())?;
            let len = t.dim(ax)?;
            let sizes: Vec<usize> = match opt(args, 1) {
                Some(s) => ints(s)?.data.iter().map(|&x| x as usize).collect(),
                None => {
                    let k = attr(n, "num_outputs")
                        .map_or(n.output.len() as i64, |a| a.i)
                        .max(1) as usize;
                    let each = len.div_ceil(k);
                    (0..k)
                        .map(|i| each.min(len - (each * i).min(len)))
                        .collect()
                }
            };
            if sizes.iter().sum::<usize>() != len || sizes.len() != n.output.len() {
                return err(format!("split sizes {sizes:?} of a dimension of {len}"));
            }
            let mut at = 0;
            sizes
                .iter()
                .map(|&s| {
                    let part = t.narrow(ax, at, s)?;
                    at += s;
                    Ok(Value::F(part))
                })
                .collect()
        }
        "Gather" => {
            let t = float(arg(args, 0)?)?;
            let idx = ints(arg(args, 1)?)?;
            let ax = axis(attr_i(n, "axis", 0), t.rank())?;
            let dim = t.dim(ax)? as i64;
            let flat: Vec<u32> = idx
                .data
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + dim } else { i };
                    if (0..dim).contains(&j) {
                        Ok(j as u32)
                    } else {
                        err(format!("index {i} is outside a dimension of {dim}"))
                    }
                })
                .collect::<Result<_>>()?;
            let ids = Tensor::from_vec(flat, idx.data.len(), &ctx.device)?;
            let picked = t.index_select(&ids, ax)?;
            let mut shape = t.dims()[..ax].to_vec();
            shape.extend(&idx.shape);
            shape.extend(&t.dims()[ax + 1..]);
            one(Value::F(picked.reshape(shape)?))
        }
        "MatMul" => {
            let (a, b) = (float(arg(args, 0)?)?, float(arg(args, 1)?)?);
            one(Value::F(matmul(a, b)?))
        }
        "Sin" => unary(&|t| t.sin()),
        "Cos" => unary(&|t| t.cos()),
        "Neg" => unary(&|t| t.neg()),
        "Sqrt" => unary(&|t| t.sqrt()),
        "Reciprocal" => unary(&|t| t.recip()),
        "Tanh" => unary(&|t| t.tanh()),
        "Exp" => unary(&|t| t.exp()),
        "Erf" => unary(&|t| t.erf()),
        "Sigmoid" => unary(&candle_nn::ops::sigmoid),
        "Gelu" => {
            let approx = attr(n, "approximate").map_or(&b"none"[..], |a| a.s.as_slice());
            match approx {
                b"tanh" => unary(&|t| t.gelu()),
                b"none" => unary(&|t| t.gelu_erf()),
                other => err(format!(
                    "Gelu approximate={:?}",
                    String::from_utf8_lossy(other)
                )),
            }
        }
        "Softmax" => {
            let t = float(arg(args, 0)?)?;
            let ax = axis(attr_i(n, "axis", -1), t.rank())?;
            one(Value::F(softmax(t, ax)?))
        }
        "ReduceMean" => {
            let t = float(arg(args, 0)?)?;
            let keep = attr_i(n, "keepdims", 1) != 0;
            let axes: Vec<usize> = match opt(args, 1) {
                Some(a) => ints(a)?
                    .data
                    .iter()
                    .map(|&x| axis(x, t.rank()))
                    .collect::<Result<_>>()?,
                None => (0..t.rank()).collect(),
            };
            let m = t.mean_keepdim(axes.clone())?;
            let m = if keep {
                m
            } else {
                let shape = squeeze_shape(
                    m.dims(),
                    Some(&axes.iter().map(|&a| a as i64).collect::<Vec<_>>()),
                )?;
                m.reshape(shape)?
            };
            one(Value::F(m))
        }
        "RMSNormalization" => {
            let (x, w) = (float(arg(args, 0)?)?, float(arg(args, 1)?)?);
            let ax = axis(attr_i(n, "axis", -1), x.rank())?;
            if ax != x.rank() - 1 || w.rank() != 1 {
                return err(format!(
                    "RMSNormalization over axis {ax} of {:?} with a scale of {:?} (only the last axis)",
                    x.dims(),
                    w.dims()
                ));
            }
            let eps = attr_f(n, "epsilon", 1e-5);
            one(Value::F(candle_nn::ops::rms_norm(
                &x.contiguous()?,
                &w.to_dtype(x.dtype())?,
                eps,
            )?))
        }
        "RotaryEmbedding" => rotary(n, args, ctx),
        "Attention" => attention(n, args, ctx),
        other => err(format!("operator {other} is not implemented")),
    }
}

/// Matrix product with numpy broadcasting; a 2-D right side (a weight) is one GEMM over all
/// leading rows of the left.
fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if b.rank() == 2 && a.rank() >= 2 {
        let a = a.contiguous()?;
        let mut dims = a.dims().to_vec();
        let k = dims.pop().expect("rank >= 2");
        let rows: usize = dims.iter().product();
        dims.push(b.dim(1)?);
        return Ok(a
            .reshape((rows, k))?
            .matmul(&b.contiguous()?)?
            .reshape(dims)?);
    }
    if a.rank() < 2 || b.rank() < 2 {
        return err(format!(
            "MatMul of {:?} and {:?} (rank 1 operands are not implemented)",
            a.dims(),
            b.dims()
        ));
    }
    // Batch dimensions broadcast, then folded into one: candle's kernels take at most one
    // batch dimension of a contiguous operand.
    let (ra, rb) = (a.rank(), b.rank());
    let batch = broadcast_shape(&a.dims()[..ra - 2], &b.dims()[..rb - 2])?;
    let (m, k, n) = (a.dim(ra - 2)?, a.dim(ra - 1)?, b.dim(rb - 1)?);
    let flat: usize = batch.iter().product();
    let expand = |t: &Tensor, rows: usize, cols: usize| -> Result<Tensor> {
        let mut shape = batch.clone();
        shape.extend([rows, cols]);
        Ok(t.broadcast_as(shape)?
            .contiguous()?
            .reshape((flat, rows, cols))?)
    };
    let y = expand(a, m, k)?.matmul(&expand(b, k, n)?)?;
    let mut shape = batch;
    shape.extend([m, n]);
    Ok(y.reshape(shape)?)
}

fn softmax(t: &Tensor, ax: usize) -> Result<Tensor> {
    if ax + 1 == t.rank() {
        Ok(candle_nn::ops::softmax_last_dim(&t.contiguous()?)?)
    } else {
        Ok(candle_nn::ops::softmax(t, ax)?)
    }
}

/// `RotaryEmbedding` (opset 23): `X` `[b, s, heads * hd]` (with `num_heads`) or `[b, heads, s,
/// hd]`, `cos_cache`/`sin_cache` `[b, s, rd / 2]` (or `[max_pos, rd / 2]` with `position_ids`),
/// rotating the first `rotary_embedding_dim` (default: all) of each head, halves not
/// interleaved.
fn rotary(n: &NodeProto, args: &[Option<&Value>], ctx: &Ctx) -> Result<Vec<Value>> {
    let x = float(arg(args, 0)?)?;
    let (mut cos, mut sin) = (float(arg(args, 1)?)?.clone(), float(arg(args, 2)?)?.clone());
    if attr_i(n, "interleaved", 0) != 0 {
        return err("interleaved rotary embeddings are not implemented");
    }
    if let Some(pos) = opt(args, 3) {
        let pos = ints(pos)?;
        let ids: Vec<u32> = pos.data.iter().map(|&p| p as u32).collect();
        let ids = Tensor::from_vec(ids, pos.data.len(), &ctx.device)?;
        let mut shape = pos.shape.clone();
        shape.push(cos.dim(D::Minus1)?);
        cos = cos.index_select(&ids, 0)?.reshape(shape.clone())?;
        sin = sin.index_select(&ids, 0)?.reshape(shape)?;
    }
    let dims = x.dims().to_vec();
    let (x4, three_d) = match dims.as_slice() {
        [b, s, h] => {
            let heads = attr_i(n, "num_heads", 0);
            if heads <= 0 || h % heads as usize != 0 {
                return err(format!("num_heads={heads} for an input of {dims:?}"));
            }
            let heads = heads as usize;
            // [b, s, heads, hd] -> [b, heads, s, hd]
            (
                x.reshape((*b, *s, heads, h / heads))?.transpose(1, 2)?,
                true,
            )
        }
        [_, _, _, _] => (x.clone(), false),
        _ => return err(format!("input of shape {dims:?} (rank 3 or 4)")),
    };
    let hd = x4.dim(3)?;
    let rd = match attr_i(n, "rotary_embedding_dim", 0) {
        0 => hd,
        r => r as usize,
    };
    let half = rd / 2;
    if cos.dim(D::Minus1)? != half {
        return err(format!(
            "cos cache of {:?} for a rotary dimension of {rd}",
            cos.dims()
        ));
    }
    // cos, sin [b, s, half] -> [b, 1, s, half]
    let cos = cos.unsqueeze(1)?.to_dtype(x.dtype())?;
    let sin = sin.unsqueeze(1)?.to_dtype(x.dtype())?;
    let x1 = x4.narrow(3, 0, half)?;
    let x2 = x4.narrow(3, half, half)?;
    let o1 = x1
        .broadcast_mul(&cos)?
        .broadcast_sub(&x2.broadcast_mul(&sin)?)?;
    let o2 = x2
        .broadcast_mul(&cos)?
        .broadcast_add(&x1.broadcast_mul(&sin)?)?;
    let mut parts = vec![o1, o2];
    if rd < hd {
        parts.push(x4.narrow(3, rd, hd - rd)?);
    }
    let y = Tensor::cat(&parts, 3)?;
    let y = if three_d {
        y.transpose(1, 2)?.reshape(dims)?
    } else {
        y
    };
    Ok(vec![Value::F(y)])
}

/// `[b, s, heads * hd]` to `[b, heads, s, hd]`; a 4-D input is already so.
fn to_heads(t: &Tensor, heads: i64, what: &str) -> Result<Tensor> {
    match *t.dims() {
        [b, s, h] => {
            if heads <= 0 || h % heads as usize != 0 {
                return err(format!("{what}: {heads} heads for a width of {h}"));
            }
            let heads = heads as usize;
            Ok(t.reshape((b, s, heads, h / heads))?
                .transpose(1, 2)?
                .contiguous()?)
        }
        [_, _, _, _] => Ok(t.contiguous()?),
        _ => err(format!("{what} of shape {:?} (rank 3 or 4)", t.dims())),
    }
}

/// `Attention` (opset 23) with grouped-query heads, an additive or boolean `attn_mask`,
/// `past_key`/`past_value`, `is_causal`, `scale` and `softcap`; outputs `Y`, `present_key`,
/// `present_value`.
fn attention(n: &NodeProto, args: &[Option<&Value>], ctx: &Ctx) -> Result<Vec<Value>> {
    let q_in = float(arg(args, 0)?)?;
    let three_d = q_in.rank() == 3;
    let qh_attr = attr_i(n, "q_num_heads", 0);
    let kvh_attr = attr_i(n, "kv_num_heads", 0);
    let q = to_heads(q_in, qh_attr, "Q")?;
    let k = to_heads(float(arg(args, 1)?)?, kvh_attr, "K")?;
    let v = to_heads(float(arg(args, 2)?)?, kvh_attr, "V")?;
    if attr_i(n, "qk_matmul_output_mode", 0) != 0 || n.output.len() > 3 {
        return err("the qk_matmul_output output is not implemented");
    }
    let cat = |past: Option<&Value>, new: Tensor| -> Result<Tensor> {
        match past {
            Some(p) => {
                let p = float(p)?;
                if p.elem_count() == 0 {
                    Ok(new)
                } else {
                    Ok(Tensor::cat(&[p, &new], 2)?)
                }
            }
            None => Ok(new),
        }
    };
    let k = cat(opt(args, 4), k)?;
    let v = cat(opt(args, 5), v)?;
    let (b, qh, s, hd) = q.dims4()?;
    let (_, kvh, total, _) = k.dims4()?;
    let vhd = v.dim(3)?;
    if kvh == 0 || qh % kvh != 0 {
        return err(format!("{qh} query heads over {kvh} key/value heads"));
    }
    let rep = qh / kvh;
    let scale = match attr(n, "scale") {
        Some(a) => a.f,
        None => 1.0 / (hd as f32).sqrt(),
    };
    // Query heads of one key/value head side by side: [b, kvh, rep * s, hd].
    let qg = q.reshape((b, kvh, rep * s, hd))?;
    let mut scores = (qg.matmul(&k.t()?)? * f64::from(scale))?;
    let softcap = attr_f(n, "softcap", 0.0);
    if softcap > 0.0 {
        scores = ((scores / f64::from(softcap))?.tanh()? * f64::from(softcap))?;
    }
    let mut scores = scores.reshape((b, kvh, rep, s, total))?;
    if let Some(mask) = opt(args, 3) {
        let mask = match mask {
            Value::F(t) => t.to_dtype(scores.dtype())?,
            Value::B(h) => {
                let allowed = upload_u8(h, ctx)?;
                let zero = Tensor::zeros(h.shape.clone(), scores.dtype(), &ctx.device)?;
                let low = Tensor::full(f32::MIN, h.shape.clone(), &ctx.device)?
                    .to_dtype(scores.dtype())?;
                allowed.where_cond(&zero, &low)?
            }
            Value::I(_) => return err("an int64 attn_mask"),
        };
        // Broadcastable to [b, qh, s, total]: make it 4-D, then split its head axis.
        let mut m4 = mask.clone();
        while m4.rank() < 4 {
            m4 = m4.unsqueeze(0)?;
        }
        let (mb, mh, ms, mt) = m4.dims4()?;
        let m5 = if mh == 1 {
            m4.reshape((mb, 1, 1, ms, mt))?
        } else if mh == qh {
            m4.reshape((mb, kvh, rep, ms, mt))?
        } else {
            return err(format!(
                "attn_mask of {:?} for {qh} query heads",
                mask.dims()
            ));
        };
        scores = scores.broadcast_add(&m5)?;
    }
    if attr_i(n, "is_causal", 0) != 0 {
        let past = total - s;
        let allowed: Vec<u8> = (0..s)
            .flat_map(|i| (0..total).map(move |j| u8::from(j <= past + i)))
            .collect();
        let allowed = Tensor::from_vec(allowed, (s, total), &ctx.device)?;
        let shape = scores.dims().to_vec();
        let low = Tensor::full(f32::MIN, shape.clone(), &ctx.device)?.to_dtype(scores.dtype())?;
        scores = allowed.broadcast_as(shape)?.where_cond(&scores, &low)?;
    }
    let probs = candle_nn::ops::softmax_last_dim(&scores.contiguous()?)?;
    let y = probs
        .reshape((b, kvh, rep * s, total))?
        .matmul(&v)?
        .reshape((b, qh, s, vhd))?;
    let y = if three_d {
        y.transpose(1, 2)?.reshape((b, s, qh * vhd))?
    } else {
        y
    };
    Ok(vec![Value::F(y), Value::F(k), Value::F(v)])
}
