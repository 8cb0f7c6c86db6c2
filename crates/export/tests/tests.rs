//! Integration tests of `xlpatch-export`, one binary with a module per topic: parity with
//! transformers' goldens through ONNX Runtime, self-consistency of the graphs on generated
//! checkpoints (KV cache, padding, external data, f16, sharding), and bad input.

mod errors;
mod gguf;
mod parity;
mod selfcheck;
mod support;
