//! A small builder for ONNX graphs and the writer that puts them on disk.
//!
//! The writer streams: initializer bytes go from memory to the file once, without a second
//! encoded copy of the model, and above a size threshold they go to a `.bin` file beside the
//! graph (ONNX external data) so that no graph passes protobuf's 2 GB limit.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::Dtype;
use crate::error::{ExportError, Result};
use crate::onnx::{
    AttributeProto, DATA_LOCATION_EXTERNAL, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_type, data_type, tensor_shape_proto, type_proto,
};

/// ONNX IR version written.
pub(crate) const IR_VERSION: i64 = 10;
/// Default-domain opset written for basic graphs.
pub(crate) const OPSET: i64 = 21;
/// Default-domain opset of fused graphs (`RMSNormalization`, `RotaryEmbedding`, `Attention`).
pub(crate) const OPSET_FUSED: i64 = 23;
/// Initializers smaller than this stay inline even when a graph uses external data.
const INLINE_MIN_BYTES: usize = 1024;
/// Alignment of tensors inside an external data file.
const EXTERNAL_ALIGN: u64 = 64;

/// One dimension of a graph input or output.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size (`batch`, `seq`, `past`, `total`).
    Sym(&'static str),
}

/// An attribute value, for [`GraphBuilder::node`].
pub(crate) enum Attr {
    /// One integer.
    Int(i64),
    /// One string.
    Str(&'static str),
    /// A list of integers.
    Ints(Vec<i64>),
    /// One float.
    Float(f32),
}

/// An initializer: its proto without data, and the data (little-endian bytes).
pub(crate) struct Initializer {
    proto: TensorProto,
    data: Vec<u8>,
}

/// Builds one graph node by node.
pub(crate) struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<Initializer>,
    consts: HashMap<Vec<i64>, String>,
    next: usize,
    opset: i64,
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match *d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(v),
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam(s.to_string()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.r#type = attribute_type::INT;
            a.i = i;
        }
        Attr::Str(s) => {
            a.r#type = attribute_type::STRING;
            a.s = s.as_bytes().to_vec();
        }
        Attr::Ints(v) => {
            a.r#type = attribute_type::INTS;
            a.ints = v;
        }
        Attr::Float(f) => {
            a.r#type = attribute_type::FLOAT;
            a.f = f;
        }
    }
    a
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub(crate) fn new(name: &str) -> Self {
        GraphBuilder {
            name: name.to_string(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            inits: Vec::new(),
            consts: HashMap::new(),
            next: 0,
            opset: OPSET,
        }
    }

    /// Declares the default-domain opset the graph's nodes need (at least [`OPSET`]).
    pub(crate) fn require_opset(&mut self, opset: i64) {
        self.opset = self.opset.max(opset);
    }

    fn fresh(&mut self, op: &str) -> String {
        self.next += 1;
        format!("{}_{}", op.to_ascii_lowercase(), self.next)
    }

    /// Declares a graph input; returns its name.
    pub(crate) fn input(&mut self, name: &str, elem: i32, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declares value `value` a graph output called `name` (adding an `Identity` if they differ).
    pub(crate) fn output(&mut self, value: &str, name: &str, elem: i32, dims: &[Dim]) {
        if value != name {
            self.node_named("Identity", &[value], name, Vec::new());
        }
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Adds a node with one output, named automatically; returns the output's name.
    pub(crate) fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(op);
        self.node_named(op, inputs, &out, attrs);
        out
    }

    /// Adds a node whose single output is called `out`; returns `out`.
    pub(crate) fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        out: &str,
        attrs: Vec<(&str, Attr)>,
    ) -> String {
        self.node_multi(op, inputs, &[out], attrs);
        out.to_string()
    }

    /// Adds a node with the given output names.
    pub(crate) fn node_multi(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) {
        self.next += 1;
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("{op}_{}", self.next),
            op_type: op.to_string(),
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        });
    }

    /// An int64 constant of shape `[len]` (shared between uses); returns its name.
    pub(crate) fn const_i64(&mut self, values: &[i64]) -> String {
        if let Some(n) = self.consts.get(values) {
            return n.clone();
        }
        let name = format!("const_i64_{}", self.consts.len());
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(&name, &[values.len()], data_type::INT64, data, "");
        self.consts.insert(values.to_vec(), name.clone());
        name
    }

    /// An int64 scalar constant; returns its name.
    pub(crate) fn scalar_i64(&mut self, value: i64) -> String {
        let name = self.fresh("scalar_i64");
        self.push_init(
            &name,
            &[],
            data_type::INT64,
            value.to_le_bytes().to_vec(),
            "",
        );
        name
    }

    /// A float scalar constant; returns its name.
    pub(crate) fn scalar_f32(&mut self, value: f32) -> String {
        let name = self.fresh("scalar_f32");
        self.push_init(
            &name,
            &[],
            data_type::FLOAT,
            value.to_le_bytes().to_vec(),
            "",
        );
        name
    }

    /// A float tensor kept in f32 whatever the weight dtype (norm weights, frequencies).
    pub(crate) fn tensor_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(name, dims, data_type::FLOAT, data, "");
        name.to_string()
    }

    /// A weight whose bytes are already in `dtype`; returns the name of an f32 value holding
    /// it (for f16 and bf16, the output of a `Cast`).
    pub(crate) fn weight(
        &mut self,
        name: &str,
        dims: &[usize],
        dtype: Dtype,
        data: Vec<u8>,
        doc: &str,
    ) -> String {
        match dtype {
            Dtype::F32 => {
                self.push_init(name, dims, data_type::FLOAT, data, doc);
                name.to_string()
            }
            Dtype::F16 | Dtype::Bf16 => {
                let stored = match dtype {
                    Dtype::F16 => data_type::FLOAT16,
                    _ => data_type::BFLOAT16,
                };
                self.push_init(name, dims, stored, data, doc);
                let out = format!("{name}.f32");
                self.node_named(
                    "Cast",
                    &[name],
                    &out,
                    vec![("to", Attr::Int(data_type::FLOAT as i64))],
                )
            }
        }
    }

    fn push_init(&mut self, name: &str, dims: &[usize], dt: i32, data: Vec<u8>, doc: &str) {
        self.inits.push(Initializer {
            proto: TensorProto {
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: dt,
                name: name.to_string(),
                doc_string: doc.to_string(),
                ..Default::default()
            },
            data,
        });
    }

    /// Total bytes of initializer data.
    pub(crate) fn weight_bytes(&self) -> usize {
        self.inits.iter().map(|i| i.data.len()).sum()
    }

    /// Writes `<dir>/<stem>.onnx` (and `<dir>/<stem>.bin` when the weights exceed
    /// `external_threshold` bytes); returns each file written with its sha256 (hex).
    pub(crate) fn write(
        self,
        dir: &Path,
        stem: &str,
        external_threshold: usize,
    ) -> Result<Vec<(String, String)>> {
        let external = self.weight_bytes() > external_threshold;
        let GraphBuilder {
            name,
            nodes,
            inputs,
            outputs,
            mut inits,
            opset,
            ..
        } = self;
        let mut written = Vec::new();
        if external {
            let bin_name = format!("{stem}.bin");
            let bin_path = dir.join(&bin_name);
            let mut bin = HashingWriter::create(&bin_path)?;
            let mut offset = 0u64;
            for init in inits
                .iter_mut()
                .filter(|i| i.data.len() >= INLINE_MIN_BYTES)
            {
                let pad = (EXTERNAL_ALIGN - offset % EXTERNAL_ALIGN) % EXTERNAL_ALIGN;
                bin.write(&vec![0u8; pad as usize])?;
                offset += pad;
                bin.write(&init.data)?;
                let length = init.data.len() as u64;
                init.proto.data_location = DATA_LOCATION_EXTERNAL;
                init.proto.external_data = vec![
                    entry("location", &bin_name),
                    entry("offset", &offset.to_string()),
                    entry("length", &length.to_string()),
                ];
                offset += length;
                init.data = Vec::new();
            }
            written.push((bin_name, bin.finish()?));
        }
        let graph = GraphProto {
            node: nodes,
            name,
            input: inputs,
            output: outputs,
            ..Default::default()
        };
        let onnx_name = format!("{stem}.onnx");
        let onnx_path = dir.join(&onnx_name);
        let mut w = HashingWriter::create(&onnx_path)?;
        write_model(&mut w, graph, inits, opset)?;
        written.push((onnx_name, w.finish()?));
        written.reverse();
        Ok(written)
    }

    /// The model as one in-memory proto (for tests).
    #[cfg(test)]
    pub(crate) fn into_model(self) -> ModelProto {
        let mut m = model_header(self.opset);
        m.graph = Some(GraphProto {
            node: self.nodes,
            name: self.name,
            input: self.inputs,
            output: self.outputs,
            initializer: self
                .inits
                .into_iter()
                .map(|i| TensorProto {
                    raw_data: i.data,
                    ..i.proto
                })
                .collect(),
            ..Default::default()
        });
        m
    }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn model_header(opset: i64) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "xlpatch-export".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// Tag byte of a length-delimited field with number `field` (< 16).
fn len_tag(field: u32) -> u8 {
    ((field << 3) | 2) as u8
}

/// Encoded length of a raw_data field holding `n` bytes (0 when empty: proto3 omits it).
fn raw_field_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 + prost::encoding::encoded_len_varint(n as u64) + n
    }
}

/// Writes a `ModelProto` whose graph holds `inits`, streaming each initializer's bytes
/// straight from memory: the header of each tensor is encoded by prost, its `raw_data`
/// field (number 9) appended by hand. Field order is free in protobuf, so the bytes decode
/// to the same message as a plain encoding.
fn write_model(
    w: &mut HashingWriter,
    graph: GraphProto,
    inits: Vec<Initializer>,
    opset: i64,
) -> Result<()> {
    const GRAPH_FIELD: u32 = 7;
    const INIT_FIELD: u32 = 5;
    const RAW_FIELD: u32 = 9;
    let header = model_header(opset);
    let tensor_lens: Vec<usize> = inits
        .iter()
        .map(|i| i.proto.encoded_len() + raw_field_len(i.data.len()))
        .collect();
    let graph_len = graph.encoded_len()
        + tensor_lens
            .iter()
            .map(|&l| 1 + prost::encoding::encoded_len_varint(l as u64) + l)
            .sum::<usize>();
    let mut buf = header.encode_to_vec();
    buf.push(len_tag(GRAPH_FIELD));
    prost::encoding::encode_varint(graph_len as u64, &mut buf);
    graph.encode(&mut buf).expect("vec has room");
    w.write(&buf)?;
    for (init, len) in inits.into_iter().zip(tensor_lens) {
        let mut buf = vec![len_tag(INIT_FIELD)];
        prost::encoding::encode_varint(len as u64, &mut buf);
        init.proto.encode(&mut buf).expect("vec has room");
        if !init.data.is_empty() {
            buf.push(len_tag(RAW_FIELD));
            prost::encoding::encode_varint(init.data.len() as u64, &mut buf);
        }
        w.write(&buf)?;
        w.write(&init.data)?;
    }
    Ok(())
}

/// A buffered file writer that hashes what it writes.
pub(crate) struct HashingWriter {
    path: std::path::PathBuf,
    inner: BufWriter<File>,
    hasher: Sha256,
}

impl HashingWriter {
    /// Creates (or truncates) `path`.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| ExportError::io(path, e))?;
        Ok(HashingWriter {
            path: path.to_path_buf(),
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
        })
    }

    /// Appends `bytes`.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.inner
            .write_all(bytes)
            .map_err(|e| ExportError::io(&self.path, e))
    }

    /// Flushes and returns the sha256 of everything written (hex).
    pub(crate) fn finish(mut self) -> Result<String> {
        self.inner
            .flush()
            .map_err(|e| ExportError::io(&self.path, e))?;
        Ok(hex(&self.hasher.finalize()))
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sha256 of a file's content (hex).
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    Ok(xlpatch_model::sha256_file(path)?)
}

/// Names and hashes of written files, in a stable order.
pub(crate) type FileHashes = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GraphBuilder {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", data_type::FLOAT, &[Dim::Sym("batch"), Dim::Fixed(4)]);
        let w = g.weight(
            "w",
            &[4, 4],
            Dtype::F32,
            (0..16).flat_map(|i| (i as f32).to_le_bytes()).collect(),
            "",
        );
        let big = g.weight("big", &[4, 300], Dtype::F32, vec![0u8; 4 * 300 * 4], "");
        let y = g.node("MatMul", &[&x, &w], vec![]);
        let _ = big;
        let shape = g.const_i64(&[0, -1]);
        let z = g.node("Reshape", &[&y, &shape], vec![("allowzero", Attr::Int(0))]);
        g.output(
            &z,
            "y",
            data_type::FLOAT,
            &[Dim::Sym("batch"), Dim::Fixed(4)],
        );
        g
    }

    #[test]
    fn streamed_encoding_decodes_to_the_plain_encoding() {
        let dir = crate::testutil::TempDir::new("graph-inline");
        let files = sample().write(dir.path(), "g", usize::MAX).unwrap();
        assert_eq!(files.len(), 1);
        let bytes = std::fs::read(dir.path().join("g.onnx")).unwrap();
        let decoded = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, sample().into_model());
        assert_eq!(files[0].1, sha256_file(&dir.path().join("g.onnx")).unwrap());
    }

    #[test]
    fn external_data_moves_large_tensors_to_a_bin_file() {
        let dir = crate::testutil::TempDir::new("graph-external");
        let files = sample().write(dir.path(), "g", 0).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["g.onnx", "g.bin"]);
        let bytes = std::fs::read(dir.path().join("g.onnx")).unwrap();
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        let g = m.graph.unwrap();
        let big = g.initializer.iter().find(|t| t.name == "big").unwrap();
        assert_eq!(big.data_location, DATA_LOCATION_EXTERNAL);
        assert!(big.raw_data.is_empty());
        let get = |k: &str| {
            big.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
                .unwrap()
        };
        assert_eq!(get("location"), "g.bin");
        assert_eq!(get("length"), "4800");
        assert_eq!(get("offset").parse::<u64>().unwrap() % EXTERNAL_ALIGN, 0);
        // The small weight stays inline.
        let w = g.initializer.iter().find(|t| t.name == "w").unwrap();
        assert_eq!(w.raw_data.len(), 64);
        let bin = std::fs::metadata(dir.path().join("g.bin")).unwrap().len();
        assert_eq!(bin, 4800);
    }

    #[test]
    fn symbolic_dims_and_opset_are_written() {
        let m = sample().into_model();
        assert_eq!(m.ir_version, 10);
        assert_eq!(m.opset_import[0].version, 21);
        let g = m.graph.unwrap();
        let Some(type_proto::Value::TensorType(t)) = &g.input[0].r#type.as_ref().unwrap().value
        else {
            panic!("not a tensor type")
        };
        let d = &t.shape.as_ref().unwrap().dim;
        assert_eq!(
            d[0].value,
            Some(tensor_shape_proto::dimension::Value::DimParam(
                "batch".into()
            ))
        );
        assert_eq!(
            d[1].value,
            Some(tensor_shape_proto::dimension::Value::DimValue(4))
        );
    }
}
