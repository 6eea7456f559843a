use leptos::prelude::*;
use leptos_router::components::A;

/// Any path the portal does not have.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="mx-auto max-w-md px-6 py-24 text-center">
            <p class="text-sm font-semibold text-indigo-600">"404"</p>
            <h1 class="mt-2 text-2xl font-semibold">"There is no such page"</h1>
            <p class="mt-2 text-slate-500">"The address may be mistyped, or the page may have moved."</p>
            <A href="/" attr:class="mt-6 inline-block rounded-md bg-indigo-600 px-4 py-2 text-sm font-medium text-white hover:bg-indigo-500">
                "Go to the start page"
            </A>
        </main>
    }
}
