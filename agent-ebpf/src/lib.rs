#![no_std]
// This file exists so agent/Cargo.toml can name this crate as a build dependency (cargo
// ignores dependencies without a library target); the programs are in main.rs.
