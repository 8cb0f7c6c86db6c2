//! A graph loaded for evaluation: its nodes in file order (the exporter writes them
//! topologically sorted), its initializers as device tensors, and the nodes that depend only
//! on initializers folded away at load (an f16 weight's `Cast` runs once, not per call).
//!
//! Values are of three kinds: floating-point tensors live on the device in the compute dtype;
//! int64 and bool tensors (positions, shapes, masks: a few hundred elements) stay on the host,
//! where their index arithmetic is cheapest, and go to the device only through `Cast` or as a
//! `Where` condition.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use prost::Message;

use crate::onnx::{GraphProto, ModelProto, NodeProto, TensorProto, data_type};
use crate::ops;

/// The highest default-domain opset whose operators this evaluator implements.
pub(crate) const MAX_OPSET: i64 = 23;

/// A host tensor: row-major data and its shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Host<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T> Host<T> {
    pub(crate) fn new(shape: Vec<usize>, data: Vec<T>) -> Host<T> {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Host { shape, data }
    }
}

/// A value flowing through a graph.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Floating point, on the device, in the compute dtype (or f16/bf16 weights before their
    /// `Cast`).
    F(Tensor),
    /// int64, on the host.
    I(Host<i64>),
    /// bool, on the host.
    B(Host<bool>),
}

impl Value {
    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            Value::F(t) => t.dims().to_vec(),
            Value::I(h) => h.shape.clone(),
            Value::B(h) => h.shape.clone(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::F(_) => "float",
            Value::I(_) => "int64",
            Value::B(_) => "bool",
        }
    }
}

/// Where values are computed and in which float dtype.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub device: Device,
    pub dtype: DType,
}

/// An evaluation error; the graph and node are added by [`Graph::run`].
#[derive(Debug)]
pub(crate) struct EvalError(pub String);

impl From<candle_core::Error> for EvalError {
    fn from(e: candle_core::Error) -> Self {
        EvalError(e.to_string())
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, EvalError>;

/// Shorthand for an [`EvalError`].
pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(EvalError(msg.into()))
}

/// A loaded graph.
#[derive(Debug)]
pub(crate) struct Graph {
    /// The file name, for messages.
    file: String,
    nodes: Vec<NodeProto>,
    /// Values that no node of the call still needs, dropped after node `i`.
    drop_after: Vec<Vec<String>>,
    consts: HashMap<String, Value>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl Graph {
    /// Reads `path`, checks every operator is implemented, loads the initializers (and any
    /// external data beside the file) onto the device, and folds constant nodes.
    pub(crate) fn load(path: &Path, ctx: &Ctx) -> Result<Graph> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bytes =
            std::fs::read(path).or_else(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let model = ModelProto::decode(bytes.as_slice())
            .or_else(|e| err(format!("{} is not an ONNX model: {e}", path.display())))?;
        drop(bytes);
        for o in &model.opset_import {
            if !o.domain.is_empty() && o.domain != "ai.onnx" {
                return err(format!(
                    "{file}: operator domain {:?} is not supported (only the default domain)",
                    o.domain
                ));
            }
            if o.version > MAX_OPSET {
                return err(format!(
                    "{file}: opset {} is newer than the {MAX_OPSET} this backend implements",
                    o.version
                ));
            }
        }
        let GraphProto {
            node,
            initializer,
            input,
            output,
            ..
        } = model.graph.unwrap_or_default();
        for n in &node {
            if !n.domain.is_empty() && n.domain != "ai.onnx" {
                return err(format!(
                    "{file}: node {} uses operator {}:{} (only the default domain is supported)",
                    n.name, n.domain, n.op_type
                ));
            }
            if !ops::SUPPORTED.contains(&n.op_type.as_str()) {
                return err(format!(
                    "{file}: operator {} (node {}) is not implemented by backend-candle \
                     (implemented: {})",
                    n.op_type,
                    n.name,
                    ops::SUPPORTED.join(", ")
                ));
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut external = ExternalFiles::default();
        let mut consts = HashMap::new();
        for t in &initializer {
            let v = initializer_value(t, dir, &mut external, ctx)
                .map_err(|e| EvalError(format!("{file}: initializer {}: {e}", t.name)))?;
            consts.insert(t.name.clone(), v);
        }
        drop(initializer);
        let mut graph = Graph {
            file,
            nodes: Vec::new(),
            drop_after: Vec::new(),
            consts,
            inputs: input.into_iter().map(|v| v.name).collect(),
            outputs: output.into_iter().map(|v| v.name).collect(),
        };
        // Fold nodes whose inputs are all constants.
        for n in node {
            let constant = n
                .input
                .iter()
                .all(|i| i.is_empty() || graph.consts.contains_key(i));
            if constant && !n.input.is_empty() {
                let args: Vec<Option<&Value>> = n
                    .input
                    .iter()
                    .map(|i| (!i.is_empty()).then(|| &graph.consts[i]))
                    .collect();
                let out = ops::eval(&n, &args, ctx).map_err(|e| graph.node_error(&n, e))?;
                for (name, v) in n.output.iter().zip(out) {
                    graph.consts.insert(name.clone(), v);
                }
            } else {
                graph.nodes.push(n);
            }
        }
        // Initializers only folded nodes used are not needed any more.
        let used: HashSet<&String> = graph
            .nodes
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(graph.outputs.iter())
            .collect();
        let unused: Vec<String> = graph
            .consts
            .keys()
            .filter(|k| !used.contains(k))
            .cloned()
            .collect();
        for k in unused {
            graph.consts.remove(&k);
        }
        // The last node using each computed value.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for inp in &n.input {
                if !graph.consts.contains_key(inp) && !graph.outputs.contains(inp) {
                    last.insert(inp, i);
                }
            }
        }
        let mut drop_after = vec![Vec::new(); graph.nodes.len()];
        for (name, i) in last {
            drop_after[i].push(name.to_string());
        }
        graph.drop_after = drop_after;
        Ok(graph)
    }

    fn node_error(&self, n: &NodeProto, e: EvalError) -> EvalError {
        EvalError(format!(
            "{}: node {} ({}): {e}",
            self.file, n.name, n.op_type
        ))
    }

    /// Runs the graph on `inputs`; returns the graph outputs named in `wanted`, in order.
    pub(crate) fn run(
        &self,
        inputs: Vec<(&str, Value)>,
        wanted: &[&str],
        ctx: &Ctx,
    ) -> Result<Vec<Value>> {
        let mut env: HashMap<String, Value> = HashMap::new();
        for (name, v) in inputs {
            if !self.inputs.iter().any(|i| i == name) {
                return err(format!("{}: the graph has no input `{name}`", self.file));
            }
            env.insert(name.to_string(), v);
        }
        if let Some(missing) = self
            .inputs
            .iter()
            .find(|i| !env.contains_key(*i) && !self.consts.contains_key(*i))
        {
            return err(format!("{}: input `{missing}` not given", self.file));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let mut args = Vec::with_capacity(n.input.len());
            for name in &n.input {
                if name.is_empty() {
                    args.push(None);
                    continue;
                }
                match env.get(name).or_else(|| self.consts.get(name)) {
                    Some(v) => args.push(Some(v)),
                    None => {
                        return Err(self.node_error(
                            n,
                            EvalError(format!("input `{name}` is computed by no earlier node")),
                        ));
                    }
                }
            }
            let out = ops::eval(n, &args, ctx).map_err(|e| self.node_error(n, e))?;
            for (name, v) in n.output.iter().zip(out) {
                env.insert(name.clone(), v);
            }
            for name in &self.drop_after[i] {
                env.remove(name);
            }
        }
        wanted
            .iter()
            .map(|w| {
                if !self.outputs.iter().any(|o| o == w) {
                    return err(format!("{}: the graph has no output `{w}`", self.file));
                }
                env.remove(*w)
                    .or_else(|| self.consts.get(*w).cloned())
                    .ok_or_else(|| EvalError(format!("{}: output `{w}` not computed", self.file)))
            })
            .collect()
    }

    /// Whether the graph declares output `name`.
    pub(crate) fn has_output(&self, name: &str) -> bool {
        self.outputs.iter().any(|o| o == name)
    }
}

/// Open external data files, by name.
#[derive(Default)]
struct ExternalFiles {
    files: HashMap<PathBuf, std::fs::File>,
}

impl ExternalFiles {
    fn read(&mut self, path: &Path, offset: u64, length: Option<u64>) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| EvalError(format!("{}: {e}", path.display()));
        if !self.files.contains_key(path) {
            let f = std::fs::File::open(path).map_err(io)?;
            self.files.insert(path.to_path_buf(), f);
        }
        let f = self.files.get_mut(path).expect("inserted above");
        let len = match length {
            Some(l) => l,
            None => f.metadata().map_err(io)?.len().saturating_sub(offset),
        };
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}

fn tensor_bytes(t: &TensorProto, dir: &Path, external: &mut ExternalFiles) -> Result<Vec<u8>> {
    if t.data_location == 1 {
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.as_str())
        };
        let location =
            get("location").ok_or_else(|| EvalError("external data without a location".into()))?;
        // Only a plain file name beside the graph: never a path out of the model directory.
        if location.contains(['/', '\\']) || location == ".." {
            return err(format!(
                "external data location {location:?} is not a file beside the graph"
            ));
        }
        let num = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.parse::<u64>()
                        .or_else(|_| err(format!("external data {k}={v:?} is not a number")))
                })
                .transpose()
        };
        return external.read(
            &dir.join(location),
            num("offset")?.unwrap_or(0),
            num("length")?,
        );
    }
    if !t.raw_data.is_empty() {
        return Ok(t.raw_data.clone());
    }
    Ok(match t.data_type {
        data_type::FLOAT => t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        data_type::INT64 => t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        // bool, f16 and bf16 are stored in int32_data when not raw.
        data_type::BOOL => t.int32_data.iter().map(|&v| u8::from(v != 0)).collect(),
        data_type::FLOAT16 | data_type::BFLOAT16 => t
            .int32_data
            .iter()
            .flat_map(|&v| (v as u16).to_le_bytes())
            .collect(),
        _ => Vec::new(),
    })
}

fn initializer_value(
    t: &TensorProto,
    dir: &Path,
    external: &mut ExternalFiles,
    ctx: &Ctx,
) -> Result<Value> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).or_else(|_| err(format!("negative dimension {d}"))))
        .collect::<Result<_>>()?;
    let n: usize = shape.iter().product();
    let bytes = tensor_bytes(t, dir, external)?;
    let width = match t.data_type {
        data_type::FLOAT => 4,
        data_type::INT64 => 8,
        data_type::BOOL => 1,
        data_type::FLOAT16 | data_type::BFLOAT16 => 2,
        other => return err(format!("element type {other} is not supported")),
    };
    if bytes.len() != n * width {
        return err(format!(
            "{} bytes of data for shape {shape:?} of {width}-byte elements",
            bytes.len()
        ));
    }
    Ok(match t.data_type {
        data_type::FLOAT => {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Value::F(Tensor::from_vec(v, shape, &ctx.device)?.to_dtype(ctx.dtype)?)
        }
        data_type::FLOAT16 => {
            let v: Vec<half::f16> = bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect();
            Value::F(Tensor::from_vec(v, shape, &ctx.device)?)
        }
        data_type::BFLOAT16 => {
            let v: Vec<half::bf16> = bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]))
                .collect();
            Value::F(Tensor::from_vec(v, shape, &ctx.device)?)
        }
        data_type::INT64 => Value::I(Host::new(
            shape,
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        )),
        _ => Value::B(Host::new(shape, bytes.iter().map(|&b| b != 0).collect())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{AttributeProto, OperatorSetIdProto, ValueInfoProto};

    fn ctx() -> Ctx {
        Ctx {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }

    fn write(dir: &Path, nodes: Vec<NodeProto>, opset: i64) -> PathBuf {
        let f32_init = |name: &str, v: &[f32], dims: &[i64]| TensorProto {
            name: name.into(),
            data_type: data_type::FLOAT,
            dims: dims.to_vec(),
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        };
        let model = ModelProto {
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            graph: Some(GraphProto {
                node: nodes,
                name: "g".into(),
                initializer: vec![
                    f32_init("w", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]),
                    f32_init("b", &[0.5, -0.5, 1.0], &[3]),
                ],
                input: vec![value_info("x")],
                output: vec![value_info("y")],
                ..Default::default()
            }),
            ..Default::default()
        };
        let path = dir.join("g.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        path
    }

    fn value_info(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], out: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            name: format!("{op}_1"),
            op_type: op.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_graph_computes_and_constant_nodes_fold_at_load() {
        let dir = tempfile::tempdir().unwrap();
        // y = x @ (w * 2) + b: the Mul of two initializers folds away.
        let two = NodeProto {
            attribute: vec![AttributeProto {
                name: "to".into(),
                i: i64::from(data_type::FLOAT),
                ..Default::default()
            }],
            ..node("Cast", &["w"], "wc")
        };
        let nodes = vec![
            two,
            node("Add", &["wc", "wc"], "w2"),
            node("MatMul", &["x", "w2"], "xw"),
            node("Add", &["xw", "b"], "y"),
        ];
        let path = write(dir.path(), nodes, 21);
        let g = Graph::load(&path, &ctx()).unwrap();
        assert_eq!(
            g.nodes.len(),
            2,
            "Cast and the first Add fold into a constant"
        );
        let x = Tensor::from_vec(vec![1f32, 0.0, 0.0, 1.0], (2, 2), &Device::Cpu).unwrap();
        let out = g.run(vec![("x", Value::F(x))], &["y"], &ctx()).unwrap();
        let Value::F(y) = &out[0] else { panic!() };
        let y: Vec<Vec<f32>> = y.to_vec2().unwrap();
        assert_eq!(y, [[2.5, 3.5, 7.0], [8.5, 9.5, 13.0]]);
    }

    #[test]
    fn an_unknown_operator_is_refused_at_load_naming_it_and_the_graph() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            vec![node("LayerNormalizationX", &["x"], "y")],
            21,
        );
        let e = Graph::load(&path, &ctx()).unwrap_err().0;
        assert!(
            e.contains("g.onnx") && e.contains("LayerNormalizationX"),
            "{e}"
        );
        let path = write(dir.path(), vec![node("Add", &["x", "b"], "y")], 24);
        let e = Graph::load(&path, &ctx()).unwrap_err().0;
        assert!(e.contains("opset 24"), "{e}");
    }
}
