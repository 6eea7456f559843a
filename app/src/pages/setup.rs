use crate::api::session::SetupAdmin;
use crate::components::ui::ErrorNotice;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// Creates the first administrator with the one-time token the server printed
/// at its first start. There is never a default password.
#[component]
pub fn Setup() -> impl IntoView {
    let action = ServerAction::<SetupAdmin>::new();
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let error = Signal::derive(move || action.value().get().and_then(|r| r.err()));
    let field = "mt-1 block w-full rounded-md border border-slate-300 px-3 py-2 focus:border-indigo-500 focus:outline-none focus:ring-1 focus:ring-indigo-500";
    view! {
        <leptos_meta::Title text="Set up"/>
        <main class="flex min-h-screen items-center justify-center px-4">
            <div class="w-full max-w-md">
                <h1 class="mb-2 text-2xl font-semibold tracking-tight">"Create the first administrator"</h1>
                <p class="mb-6 text-sm text-slate-500">"This link works once. The account you create here can add everyone else."</p>
                <ActionForm action=action attr:class="space-y-4 rounded-lg border border-slate-200 bg-white p-6 shadow-sm">
                    <ErrorNotice error/>
                    <div>
                        <label for="token" class="block text-sm font-medium text-slate-700">"Setup token"</label>
                        <input id="token" name="token" type="text" required value=token class=field/>
                    </div>
                    <div>
                        <label for="name" class="block text-sm font-medium text-slate-700">"User name"</label>
                        <input id="name" name="name" type="text" required autocomplete="username" class=field/>
                    </div>
                    <div>
                        <label for="password" class="block text-sm font-medium text-slate-700">"Password"</label>
                        <input id="password" name="password" type="password" required minlength="12" autocomplete="new-password" class=field/>
                        <p class="mt-1 text-xs text-slate-500">"At least 12 characters."</p>
                    </div>
                    <div>
                        <label for="confirm" class="block text-sm font-medium text-slate-700">"Repeat the password"</label>
                        <input id="confirm" name="confirm" type="password" required minlength="12" autocomplete="new-password" class=field/>
                    </div>
                    <button type="submit" class="w-full rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500">
                        "Create administrator"
                    </button>
                </ActionForm>
            </div>
        </main>
    }
}
