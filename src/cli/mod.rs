//! Commands of the `mcpgate` binary that need more than one layer: they sit
//! at the top of the module graph and may use any module below.

pub mod explain;
