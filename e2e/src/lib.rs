//! Docker fault tests of fabric-master live in `tests/`; this crate has no code of its own.
