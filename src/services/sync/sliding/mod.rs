//! Simplified sliding sync (MSC4186): the request's parameters and their bounds
//! (`request`), and the connections' remembered state (`conn`). The endpoint that answers
//! with them is not served yet (docs/architecture.md, "Sliding sync").

pub mod conn;
pub mod request;
