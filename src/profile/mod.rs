//! Profiles: the spanned document tree ([`node`]), typed values
//! ([`value`]), the `section!` machinery ([`section`]), the model itself
//! ([`model`]), loading with `extends` ([`load`](mod@load)) and the JSON Schema
//! ([`schema`]).

pub mod load;
pub mod model;
pub mod node;
pub mod schema;
pub mod section;
pub mod value;

pub use load::{LoadOptions, Loaded, load};
pub use model::Profile;
