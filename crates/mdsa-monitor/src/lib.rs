//! Request log, latency metrics and Prometheus exposition.
