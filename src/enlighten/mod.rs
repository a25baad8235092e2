//! Everything that talks to the Enphase Enlighten cloud: OAuth, tokens, the hit ledger and the typed API.
pub mod api;
pub mod client;
pub mod error;
pub mod ledger;
pub mod lenient;
pub mod oauth;
pub mod plan;
pub mod responses;
pub mod tokens;

pub use client::EnlightenClient;
pub use error::ApiError;
pub use plan::Plan;
