//! Benchmarks only: see benches/extism.rs.
