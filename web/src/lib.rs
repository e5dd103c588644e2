//! Web client: server-rendered pages.
