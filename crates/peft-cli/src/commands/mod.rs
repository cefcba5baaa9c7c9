//! One module per subcommand.

pub mod demo;
pub mod generate;
pub mod generation_args;
pub mod inspect;
pub mod logits;
pub mod merge;
pub mod model_args;
pub mod predict;
pub mod train;
