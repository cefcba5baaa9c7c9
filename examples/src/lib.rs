//! Examples live in the `examples` targets of this package.

/// The workspace README's quickstart, compiled with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
