//! End to end: the real `handler` binary, started by the Functions host
//! stand-in (proxy, forward and invocation-payload mode), against devstack's identity
//! endpoint, Key Vault, EasyAuth gate + app2, and Azurite.
mod demo;
mod doctor;
mod functions;
mod helpers;
mod hostile;
mod interop;
mod keyvault;
mod scenarios;
mod secrecy;
mod streaming;
mod trace_page;
mod trace_tree;
