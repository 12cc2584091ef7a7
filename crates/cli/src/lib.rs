//! crmdq
