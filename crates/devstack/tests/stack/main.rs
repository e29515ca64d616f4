//! devstack's acceptance tests: the spec's I (identity), T (token validation)
//! and E (EasyAuth) cases, Key Vault and Azurite, against running stand-ins.
mod burst;
mod conformance;
mod gate;
mod helpers;
mod identity;
mod keyvault;
mod lifecycle;
mod storage;
