//! The `/v1` API for services and people (not admins): the revocation feed and its
//! stream, usage reports, and one's own just-in-time access requests.

pub mod access;
pub mod feed;
pub mod usage;
