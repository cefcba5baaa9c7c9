//! Examples live in the `examples` targets of this package.
