//! Keys and values of the tokens already seen: [`KvCache`] lives in `peft-core`, so methods
//! (prefix tuning) can build one without depending on the models; re-exported here.

pub use peft_core::cache::{KvCache, LayerKv};

impl crate::generation::SelectRows for KvCache {
    fn select_rows(self, rows: burn::tensor::Tensor<1, burn::tensor::Int>) -> Self {
        KvCache::select_rows(self, rows)
    }
}
