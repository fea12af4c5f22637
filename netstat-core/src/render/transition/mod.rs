//! Transition lines for `enetstat watch`: one line per TCP state change, in each [`Format`].
//! The three formats share one list of fields ([`json::JsonTransition`]), so they live side
//! by side.
//!
//! [`Format`]: super::Format

pub mod csv;
pub mod json;
pub mod text;
