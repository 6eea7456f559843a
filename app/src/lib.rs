//! The Handover portal: pages, components and the server functions they call.
//!
//! Compiled twice: with `ssr` into the `handover` binary (server functions run
//! there, as thin adapters to the server library behind [`backend::Backend`]),
//! and with `hydrate` into WebAssembly for the browser.
// Without erased component types (release builds) the view types of the
// delegation pages nest deeper than the default limit of 128.
#![recursion_limit = "512"]

pub mod api;
pub mod app;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod components;
pub mod pages;

pub use app::{shell, App};

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
