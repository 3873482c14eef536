//! The `weft-bench` load generator: simulated y-websocket and Hocuspocus clients on loopback,
//! scenario runners, result records and plots. The binary (`src/bin/weft-bench.rs`) only parses
//! arguments and calls into here.
//!
//! It deliberately measures from the outside: it speaks the public wire protocols, so the same
//! scenarios run against Weft and against the other relays, and it reads the server's CPU time and
//! memory from `/proc`. It never applies received updates — it scans them for the markers its own
//! edits carry (see [`edits`]) — so that it stays cheap next to the server on a small machine.

pub mod client;
pub mod edits;
pub mod plot;
pub mod report;
pub mod round;
pub mod scenarios;
pub mod target;
pub mod trace_cache;
pub mod wire;
