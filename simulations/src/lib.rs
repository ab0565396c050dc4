//! # grove-simulations — the deterministic cluster simulator (not built yet)
//!
//! Role: whole clusters in one process and one thread under a seeded simulator (time, network,
//! disk, randomness), fault injection, invariant checkers and the `grove-sim` command. Its issue has
//! not been taken up; this crate holds no code yet. Nothing depends on this crate.
