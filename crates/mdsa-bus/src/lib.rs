//! In-process typed message bus and per-request workflow state machine.
