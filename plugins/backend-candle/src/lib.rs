//! `backend-candle`: runs an exported model directory (`embed.onnx`, `layer_{i}.onnx`,
//! `head.onnx`, see `xlpatch-model`) with [candle](https://github.com/huggingface/candle), on
//! the CPU or, with the `cuda` feature, on an NVIDIA GPU. The same graphs `backend-ort` runs:
//! a small evaluator of exactly the operators `xlpatch export` writes, in both spellings
//! (`basic` and `fused`), weights loaded once onto the device when the model opens.
//!
//! Why candle: pure Rust (no runtime library to download or carry), the same code on CPU,
//! CUDA (cudarc loads the CUDA libraries at run time, so a binary built without a GPU runs on
//! one) and Metal, and a few hundred lines to run the graphs; tract is CPU only, and ONNX
//! Runtime's CUDA provider ships libraries far larger than what travels to a GPU machine.
//!
//! Parameters:
//! - `model`: the model directory (required);
//! - `device`: `cpu` (default), `cuda` or `cuda:N` (needs the `cuda` feature);
//! - `dtype`: the compute dtype, `f32` (default), `f16` or `bf16`; inputs and outputs stay f32;
//! - `threads`: CPU threads (default 0: all cores);
//! - `verify`: check every file against the manifest's sha256 (default `true`).

mod graph;
mod ops;

// The messages the exporter writes, from the crate it writes them with.
use xlpatch_onnx_proto as onnx;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use xlpatch_abi::{
    Backend, Create, LayerRun, ModelInfo, Params, PluginError, StatusCode, TensorMut, TensorRef,
    declare_plugin,
};
use xlpatch_model::Manifest;

use crate::graph::{Ctx, EvalError, Graph, Host, Value};

struct CandleBackend {
    info: ModelInfo,
    ctx: Ctx,
    pool: Option<rayon::ThreadPool>,
    embed: Graph,
    layers: Vec<Graph>,
    head: Graph,
}

fn parse_bool(params: &Params, key: &str, default: bool) -> Result<bool, PluginError> {
    match params.get(key) {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(v) => Err(PluginError::invalid(format!(
            "parameter {key}={v:?} is not true or false"
        ))),
    }
}

fn parse_device(spec: &str) -> Result<Device, PluginError> {
    let unavailable = |e: candle_core::Error| {
        PluginError::new(
            StatusCode::UNSUPPORTED,
            format!("device {spec:?} is not available: {e}"),
        )
    };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(unavailable),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Device::new_cuda(n).map_err(unavailable),
            _ => Err(PluginError::invalid(format!(
                "parameter device={spec:?} is not cpu, cuda or cuda:N"
            ))),
        },
    }
}

fn eval_err(e: EvalError) -> PluginError {
    PluginError::internal(e.0)
}

impl Create for CandleBackend {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&["model", "device", "dtype", "threads", "verify"])?;
        let dir = PathBuf::from(params.get("model").ok_or_else(|| {
            PluginError::invalid("parameter `model` (a model directory) is required")
        })?);
        let device = parse_device(params.get("device").unwrap_or("cpu"))?;
        let dtype = match params.get("dtype").unwrap_or("f32") {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            other => {
                return Err(PluginError::invalid(format!(
                    "parameter dtype={other:?} is not f32, f16 or bf16"
                )));
            }
        };
        let threads: usize = match params.get("threads") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                PluginError::invalid(format!("parameter threads={v:?} is not a count"))
            })?,
        };
        let pool = if threads > 0 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| PluginError::internal(format!("cannot start threads: {e}")))?,
            )
        } else {
            None
        };
        let io = |e: xlpatch_model::ModelError| PluginError::with_causes(StatusCode::IO, &e);
        let manifest = if parse_bool(params, "verify", true)? {
            Manifest::load(&dir).map_err(io)?
        } else {
            Manifest::read(&dir).map_err(io)?
        };
        let ctx = Ctx { device, dtype };
        let open = |file: &str| Graph::load(&dir.join(file), &ctx).map_err(eval_err);
        let load = || -> Result<_, PluginError> {
            let embed = open(Manifest::EMBED)?;
            let layers = (0..manifest.num_layers)
                .map(|i| open(&Manifest::layer_file(i)))
                .collect::<Result<Vec<_>, _>>()?;
            let head = open(Manifest::HEAD)?;
            Ok((embed, layers, head))
        };
        let (embed, layers, head) = match &pool {
            Some(p) => p.install(load)?,
            None => load()?,
        };
        let u32_of = |n: usize| n as u32;
        Ok(CandleBackend {
            info: ModelInfo {
                n_layers: u32_of(manifest.num_layers),
                d_model: u32_of(manifest.hidden_size),
                n_kv_heads: u32_of(manifest.num_kv_heads),
                head_dim: u32_of(manifest.head_dim),
                vocab: u32_of(manifest.vocab_size),
                has_sublayer_outputs: u32::from(manifest.extra_outputs),
                ..ModelInfo::default()
            },
            ctx,
            pool,
            embed,
            layers,
            head,
        })
    }
}

impl CandleBackend {
    /// Runs `f` on the backend's thread pool, if it has one.
    fn on_pool<T: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> T + Send) -> T {
        match pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

/// A float input on the device, in the compute dtype.
fn float_in(t: &TensorRef<'_, f32>, ctx: &Ctx) -> Result<Value, PluginError> {
    let up = || -> candle_core::Result<Tensor> {
        Tensor::from_slice(t.data(), t.shape(), &ctx.device)?.to_dtype(ctx.dtype)
    };
    up().map(Value::F)
        .map_err(|e| PluginError::internal(format!("cannot upload an input: {e}")))
}

fn int_in(t: &TensorRef<'_, i64>) -> Value {
    Value::I(Host::new(t.shape().to_vec(), t.data().to_vec()))
}

/// Copies output `name` (a device tensor) into `out`, after checking that the shapes agree.
fn copy_out(name: &str, v: &Value, out: &mut TensorMut<'_, f32>) -> Result<(), PluginError> {
    let Value::F(t) = v else {
        return Err(PluginError::internal(format!(
            "output `{name}` is {}, not float",
            v.kind()
        )));
    };
    if t.dims() != out.shape() {
        return Err(PluginError::invalid(format!(
            "output `{name}` has shape {:?} but the caller allocated {:?}",
            t.dims(),
            out.shape()
        )));
    }
    let data = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| PluginError::internal(format!("cannot read output `{name}`: {e}")))?;
    out.data_mut().copy_from_slice(&data);
    Ok(())
}

impl Backend for CandleBackend {
    fn info(&self) -> ModelInfo {
        self.info
    }

    fn embed(
        &mut self,
        ids: TensorRef<'_, i64>,
        mut hidden: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        self.info.check_token_ids(ids.data())?;
        let (graph, ctx) = (&self.embed, &self.ctx);
        let out = Self::on_pool(self.pool.as_ref(), || {
            graph.run(vec![("input_ids", int_in(&ids))], &["hidden"], ctx)
        })
        .map_err(eval_err)?;
        copy_out("hidden", &out[0], &mut hidden)
    }

    fn layer(&mut self, index: u32, mut run: LayerRun<'_>) -> Result<(), PluginError> {
        let n = self.layers.len();
        let graph = self.layers.get(index as usize).ok_or_else(|| {
            PluginError::invalid(format!("layer {index} does not exist (the model has {n})"))
        })?;
        let sublayers = run.attn_out.is_some() || run.mlp_out.is_some();
        if sublayers && !(graph.has_output("attn_out") && graph.has_output("mlp_out")) {
            return Err(PluginError::new(
                StatusCode::UNSUPPORTED,
                "attn_out/mlp_out asked for, but the model was exported without them",
            ));
        }
        let ctx = &self.ctx;
        let inputs = vec![
            ("hidden_in", float_in(&run.hidden_in, ctx)?),
            ("position_ids", int_in(&run.position_ids)),
            ("attention_mask", int_in(&run.attention_mask)),
            ("past_key", float_in(&run.past_key, ctx)?),
            ("past_value", float_in(&run.past_value, ctx)?),
        ];
        let mut wanted = vec!["hidden_out", "present_key", "present_value"];
        if sublayers {
            wanted.extend(["attn_out", "mlp_out"]);
        }
        let out = Self::on_pool(self.pool.as_ref(), || graph.run(inputs, &wanted, ctx))
            .map_err(eval_err)?;
        copy_out("hidden_out", &out[0], &mut run.hidden_out)?;
        copy_out("present_key", &out[1], &mut run.present_key)?;
        copy_out("present_value", &out[2], &mut run.present_value)?;
        if let Some(o) = run.attn_out.as_mut() {
            copy_out("attn_out", &out[3], o)?;
        }
        if let Some(o) = run.mlp_out.as_mut() {
            copy_out("mlp_out", &out[4], o)?;
        }
        Ok(())
    }

    fn head(
        &mut self,
        hidden: TensorRef<'_, f32>,
        mut logits: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let ctx = &self.ctx;
        let input = float_in(&hidden, ctx)?;
        let graph = &self.head;
        let out = Self::on_pool(self.pool.as_ref(), || {
            graph.run(vec![("hidden", input)], &["logits"], ctx)
        })
        .map_err(eval_err)?;
        copy_out("logits", &out[0], &mut logits)
    }
}

declare_plugin!(
    kind: backend,
    name: "backend-candle",
    description: "run exported model graphs (embed, layer_i, head) with candle on CPU or CUDA",
    type: CandleBackend,
);
