//! `backend-ort`: runs an exported model directory (`embed.onnx`, `layer_{i}.onnx`,
//! `head.onnx`, see `xlpatch-model`) with ONNX Runtime, one session per graph, so a run can
//! start at any layer and the residual stream between blocks can be read and overwritten.
//!
//! Parameters:
//! - `model`: the model directory (required);
//! - `ort_library`: ONNX Runtime's shared library (default: `$ORT_DYLIB_PATH`, else the one
//!   `cargo xtask ort` fetched into `.cache/ort/` of the checkout the host was built in);
//! - `threads`: intra-op threads per session (default 0: ONNX Runtime decides);
//! - `opt_level`: `disable`, `basic`, `extended` or `all` (default `all`);
//! - `verify`: check every file against the manifest's sha256 (default `true`);
//! - `provider`: `cpu` (default) or `cuda` (needs the `cuda` feature).
//!
//! The plugin owns no patching logic: it maps caller-allocated ABI tensors onto ONNX Runtime
//! inputs, runs one graph, and copies the outputs back after checking their shapes.

mod locate;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef as OrtTensorRef;
use xlpatch_abi::{
    Backend, Create, LayerRun, ModelInfo, Params, PluginError, StatusCode, TensorMut, TensorRef,
    declare_plugin,
};
use xlpatch_model::Manifest;

/// One ONNX Runtime environment per process; the library can only be loaded once.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<&'static Environment, PluginError> {
    ENVIRONMENT
        .get_or_init(|| {
            let builder = ort::init_from(library)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?;
            builder
                .with_name("xlpatch")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| PluginError::new(StatusCode::IO, e.clone()))
}

struct OrtBackend {
    info: ModelInfo,
    embed: Session,
    layers: Vec<Session>,
    head: Session,
}

fn ort_err(what: &Path) -> impl Fn(ort::Error) -> PluginError + '_ {
    move |e| PluginError::internal(format!("{}: {e}", what.display()))
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

impl Create for OrtBackend {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&[
            "model",
            "ort_library",
            "threads",
            "opt_level",
            "verify",
            "provider",
        ])?;
        let dir = PathBuf::from(params.get("model").ok_or_else(|| {
            PluginError::invalid("parameter `model` (a model directory) is required")
        })?);
        let library = params
            .get("ort_library")
            .map(PathBuf::from)
            .or_else(locate::locate)
            .ok_or_else(|| PluginError::new(StatusCode::IO, locate::NOT_FOUND))?;
        if !library.is_file() {
            return Err(PluginError::new(
                StatusCode::IO,
                format!(
                    "ONNX Runtime library {} does not exist (`cargo xtask ort` fetches it)",
                    library.display()
                ),
            ));
        }
        let threads: usize = match params.get("threads") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                PluginError::invalid(format!("parameter threads={v:?} is not a count"))
            })?,
        };
        let level = match params.get("opt_level").unwrap_or("all") {
            "disable" => GraphOptimizationLevel::Disable,
            "basic" => GraphOptimizationLevel::Level1,
            "extended" => GraphOptimizationLevel::Level2,
            "all" => GraphOptimizationLevel::All,
            other => {
                return Err(PluginError::invalid(format!(
                    "parameter opt_level={other:?} is not disable, basic, extended or all"
                )));
            }
        };
        let cuda = match params.get("provider").unwrap_or("cpu") {
            "cpu" => false,
            "cuda" if cfg!(feature = "cuda") => true,
            "cuda" => {
                return Err(PluginError::new(
                    StatusCode::UNSUPPORTED,
                    "this backend-ort was built without the `cuda` feature",
                ));
            }
            other => {
                return Err(PluginError::invalid(format!(
                    "parameter provider={other:?} is not cpu or cuda"
                )));
            }
        };
        let io = |e: xlpatch_model::ModelError| PluginError::with_causes(StatusCode::IO, &e);
        let manifest = if parse_bool(params, "verify", true)? {
            Manifest::load(&dir).map_err(io)?
        } else {
            Manifest::read(&dir).map_err(io)?
        };
        let env = environment(&library)?;
        let open = |file: &str| -> Result<Session, PluginError> {
            let path = dir.join(file);
            let err = ort_err(&path);
            let mut builder = Session::builder(env)
                .map_err(&err)?
                .with_optimization_level(level)
                .map_err(|e| err(e.into()))?
                // One session per graph, each with its own pool, run one after another:
                // workers spinning after their call only steal the next session's cores
                // (measured: 4-8x slower with 2 threads on 2 cores).
                .with_intra_op_spinning(false)
                .map_err(|e| err(e.into()))?;
            if threads > 0 {
                builder = builder
                    .with_intra_threads(threads)
                    .map_err(|e| err(e.into()))?
                    .with_inter_threads(1)
                    .map_err(|e| err(e.into()))?;
            }
            if cuda {
                builder = with_cuda(builder).map_err(&err)?;
            }
            builder.commit_from_file(&path).map_err(&err)
        };
        let embed = open(Manifest::EMBED)?;
        let layers = (0..manifest.num_layers)
            .map(|i| open(&Manifest::layer_file(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let head = open(Manifest::HEAD)?;
        let u32_of = |n: usize| n as u32;
        Ok(OrtBackend {
            info: ModelInfo {
                n_layers: u32_of(manifest.num_layers),
                d_model: u32_of(manifest.hidden_size),
                n_kv_heads: u32_of(manifest.num_kv_heads),
                head_dim: u32_of(manifest.head_dim),
                vocab: u32_of(manifest.vocab_size),
                has_sublayer_outputs: u32::from(manifest.extra_outputs),
                ..ModelInfo::default()
            },
            embed,
            layers,
            head,
        })
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    builder
        .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
        .map_err(Into::into)
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    Ok(builder)
}

/// An ONNX Runtime view of an ABI tensor.
fn input<'a, T>(t: &TensorRef<'a, T>) -> Result<OrtTensorRef<'a, T>, PluginError>
where
    T: xlpatch_abi::Element + ort::value::PrimitiveTensorElementType + std::fmt::Debug,
{
    OrtTensorRef::from_array_view((t.shape(), t.data()))
        .map_err(|e| PluginError::internal(format!("cannot wrap an input tensor: {e}")))
}

/// Copies output `name` into `out`, after checking that the shapes agree.
fn copy_out(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    out: &mut TensorMut<'_, f32>,
) -> Result<(), PluginError> {
    let value = outputs
        .get(name)
        .ok_or_else(|| PluginError::internal(format!("the graph has no output `{name}`")))?;
    let (shape, data) = value
        .try_extract_tensor::<f32>()
        .map_err(|e| PluginError::internal(format!("output `{name}`: {e}")))?;
    let same = shape.len() == out.shape().len()
        && shape
            .iter()
            .zip(out.shape())
            .all(|(a, b)| *a as usize == *b);
    if !same {
        return Err(PluginError::invalid(format!(
            "output `{name}` has shape {:?} but the caller allocated {:?}",
            &shape[..],
            out.shape()
        )));
    }
    out.data_mut().copy_from_slice(data);
    Ok(())
}

fn run_err(graph: &str) -> impl Fn(ort::Error) -> PluginError + '_ {
    move |e| PluginError::internal(format!("running {graph}: {e}"))
}

impl Backend for OrtBackend {
    fn info(&self) -> ModelInfo {
        self.info
    }

    fn embed(
        &mut self,
        ids: TensorRef<'_, i64>,
        mut hidden: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        self.info.check_token_ids(ids.data())?;
        let outputs = self
            .embed
            .run(ort::inputs!["input_ids" => input(&ids)?])
            .map_err(run_err(Manifest::EMBED))?;
        copy_out(&outputs, "hidden", &mut hidden)
    }

    fn layer(&mut self, index: u32, mut run: LayerRun<'_>) -> Result<(), PluginError> {
        let n = self.layers.len();
        let session = self.layers.get_mut(index as usize).ok_or_else(|| {
            PluginError::invalid(format!("layer {index} does not exist (the model has {n})"))
        })?;
        if (run.attn_out.is_some() || run.mlp_out.is_some()) && self.info.has_sublayer_outputs == 0
        {
            return Err(PluginError::new(
                StatusCode::UNSUPPORTED,
                "attn_out/mlp_out asked for, but the model was exported without them",
            ));
        }
        let outputs = session
            .run(ort::inputs![
                "hidden_in" => input(&run.hidden_in)?,
                "position_ids" => input(&run.position_ids)?,
                "attention_mask" => input(&run.attention_mask)?,
                "past_key" => input(&run.past_key)?,
                "past_value" => input(&run.past_value)?,
            ])
            .map_err(|e| PluginError::internal(format!("running layer_{index}.onnx: {e}")))?;
        copy_out(&outputs, "hidden_out", &mut run.hidden_out)?;
        copy_out(&outputs, "present_key", &mut run.present_key)?;
        copy_out(&outputs, "present_value", &mut run.present_value)?;
        if let Some(out) = run.attn_out.as_mut() {
            copy_out(&outputs, "attn_out", out)?;
        }
        if let Some(out) = run.mlp_out.as_mut() {
            copy_out(&outputs, "mlp_out", out)?;
        }
        Ok(())
    }

    fn head(
        &mut self,
        hidden: TensorRef<'_, f32>,
        mut logits: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let outputs = self
            .head
            .run(ort::inputs!["hidden" => input(&hidden)?])
            .map_err(run_err(Manifest::HEAD))?;
        copy_out(&outputs, "logits", &mut logits)
    }
}

declare_plugin!(
    kind: backend,
    name: "backend-ort",
    description: "run exported model graphs (embed, layer_i, head) with ONNX Runtime",
    type: OrtBackend,
);
