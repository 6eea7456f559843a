use crate::api::{Me, Role};
use crate::components::ui::PageHeader;
use leptos::prelude::*;
use leptos_router::components::A;

/// The start page after sign-in: where to go from here, by role.
#[component]
pub fn Home() -> impl IntoView {
    let me = expect_context::<Me>();
    let cards: Vec<(&str, &str, &str)> = [
        (
            Role::Viewer,
            "/devices",
            "Devices",
            "Search the inventory; open a device's tree, ACLs and history.",
        ),
        (
            Role::Admin,
            "/users",
            "Users",
            "Create accounts, grant roles, disable and reset.",
        ),
        (
            Role::Auditor,
            "/audit",
            "Audit log",
            "Every security-relevant event, hash-chained; export and verify.",
        ),
    ]
    .into_iter()
    .filter(|(r, ..)| me.has(*r))
    .map(|(_, h, t, d)| (h, t, d))
    .collect();
    let empty = cards.is_empty();
    view! {
        <leptos_meta::Title text="Start"/>
        <PageHeader title=format!("Welcome, {}", me.name) subtitle=format!("Management Authority {}", me.server_id)/>
        <div class="grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
            {cards
                .into_iter()
                .map(|(href, title, desc)| {
                    view! {
                        <A href=href attr:class="block rounded-lg border border-slate-200 bg-white p-5 shadow-sm hover:border-indigo-300 hover:shadow">
                            <h2 class="font-medium text-slate-900">{title}</h2>
                            <p class="mt-1 text-sm text-slate-500">{desc}</p>
                        </A>
                    }
                })
                .collect_view()}
        </div>
        <Show when=move || empty>
            <p class="rounded-lg border border-dashed border-slate-300 bg-white p-6 text-sm text-slate-500">
                "Your account has no role with a page yet. Ask an administrator to grant you one."
            </p>
        </Show>
    }
}
