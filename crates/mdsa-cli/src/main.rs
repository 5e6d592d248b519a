//! The mdsa command-line tool.
fn main() {}
