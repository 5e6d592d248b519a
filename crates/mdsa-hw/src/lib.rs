//! Hardware detection.
