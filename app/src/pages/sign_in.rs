use crate::api::session::SignIn as SignInFn;
use crate::api::session::{current_user, setup_needed};
use crate::components::ui::ErrorNotice;
use leptos::prelude::*;
use leptos_router::components::{Redirect, A};
use leptos_router::hooks::use_query_map;

/// Sign in with a local account. Works without JavaScript: the form posts to
/// the server function, which sets the session cookie and redirects.
#[component]
pub fn SignIn() -> impl IntoView {
    let action = ServerAction::<SignInFn>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let error = Signal::derive(move || action.value().get().and_then(|r| r.err()));
    let state = Resource::new(
        || (),
        |_| async { (current_user().await, setup_needed().await) },
    );
    view! {
        <leptos_meta::Title text="Sign in"/>
        <main class="flex min-h-screen items-center justify-center px-4">
            <div class="w-full max-w-sm">
                <div class="mb-8 text-center">
                    <span class="mx-auto mb-3 block h-10 w-10 rounded-lg bg-indigo-600" aria-hidden="true"></span>
                    <h1 class="text-2xl font-semibold tracking-tight">"Sign in to Handover"</h1>
                </div>
                <Suspense>
                    {move || Suspend::new(async move {
                        match state.await {
                            (Ok(Some(_)), _) => view! { <Redirect path="/"/> }.into_any(),
                            (_, Ok(true)) => view! {
                                <p role="note" class="mb-4 rounded-md border border-amber-200 bg-amber-50 px-4 py-3 text-sm text-amber-900">
                                    "No account exists yet. Open the one-time setup link printed by the server at start, or run "
                                    <code class="font-mono">"handover admin user create"</code> "."
                                </p>
                            }.into_any(),
                            _ => ().into_any(),
                        }
                    })}
                </Suspense>
                <ActionForm action=action attr:class="space-y-4 rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
                    <input type="hidden" name="next" value=next/>
                    <ErrorNotice error/>
                    <div>
                        <label for="name" class="block text-sm font-medium text-slate-700">"User name"</label>
                        <input id="name" name="name" type="text" required autocomplete="username" autofocus
                            class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500"/>
                    </div>
                    <div>
                        <label for="password" class="block text-sm font-medium text-slate-700">"Password"</label>
                        <input id="password" name="password" type="password" required autocomplete="current-password"
                            class="mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500"/>
                    </div>
                    <button type="submit" prop:disabled=move || action.pending().get()
                        class="w-full rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500 disabled:opacity-60">
                        {move || if action.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </ActionForm>
                <p class="mt-6 text-center text-xs text-slate-400">
                    <A href="/">"Handover"</A> " · the DM Server of a Management Authority"
                </p>
            </div>
        </main>
    }
}
