//! The tensor map type shared with peft-io.

pub(crate) use peft_io::tensors::TensorMap;
