//! Black-box tests of app1. One binary (faster to link), one module per area.
mod app_files;
mod binary;
mod downstream;
mod federation;
mod functions;
mod helpers;
mod trace_ids;
