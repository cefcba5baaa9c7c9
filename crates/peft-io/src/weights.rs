//! Base-model weights from safetensors into a model built for adapters (in progress).
