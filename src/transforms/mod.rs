//! The `Transform` trait, its registry, and one file per built-in step kind.
