#![no_std]
// The library target exists so host-side tooling (clippy, tests) can see the crate.
