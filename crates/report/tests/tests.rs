//! Integration tests of the report: a report built from a small results directory written by
//! hand (`e2e`), what it counts and notes (`counts`), its plots on edge cases (`plots`), and
//! the same report opened in headless Chromium (`browser`).

mod browser;
mod counts;
mod e2e;
mod fixture;
mod plots;
