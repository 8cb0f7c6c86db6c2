//! Integration tests of the report: a report built from a small results directory written by
//! hand (`e2e`), and the same report opened in headless Chromium (`browser`).

mod browser;
mod e2e;
mod fixture;
