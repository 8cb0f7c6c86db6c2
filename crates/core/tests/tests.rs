//! Integration tests of the engine on real exports of the tiny fixture checkpoints, run
//! through the built plugins and ONNX Runtime, one module per topic.

mod archs;
mod patch;
mod prefix;
mod support;
mod sweep;
mod text;
